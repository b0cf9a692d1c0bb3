"""A rebuilt tracker sends only the transitions the alerts topic does not hold yet."""

from __future__ import annotations

from test_tracker import run, stream

from driftwire.alerts.alert import Alert
from driftwire.truth.sent import SentAlerts


def key(a: Alert) -> tuple[str, str, int]:
    return a.fingerprint, a.status, a.evaluated_at_ms


def test_a_rebuild_after_any_number_of_sends_completes_the_topic_without_repeats() -> None:
    """Killed after its k-th send (every k), the rebuilt run replays the whole stream: what it
    admits, after what the topic holds, is exactly the uninterrupted run's transitions."""
    alerts = run(stream(2, 60, flip_from=25, flip_until=40))
    assert len(alerts) >= 2 and {a.status for a in alerts} == {"firing", "resolved"}
    for k in range(len(alerts) + 1):
        sent = SentAlerts()
        for a in alerts[:k]:
            sent.seed(*key(a))
        again = [a for a in alerts if sent.admit(*key(a))]
        assert [key(a) for a in alerts[:k] + again] == [key(a) for a in alerts], k


def test_a_replay_one_window_off_is_not_sent_again() -> None:
    """Across partitions a rebuild can judge a transition one window earlier or later: it is
    the same transition and is withheld; a real change after it is sent."""
    sent = SentAlerts()
    sent.seed("f", "firing", 10_000)
    assert not sent.admit("f", "firing", 9_000)  # one window earlier
    assert not sent.admit("f", "firing", 11_000)  # one window later: still firing
    assert sent.admit("f", "resolved", 20_000)
    assert not sent.admit("f", "resolved", 21_000)
    assert sent.admit("f", "firing", 30_000)
