"""The alert policy: K consecutive windows, hysteresis, one alert per condition, re-notify."""

from __future__ import annotations

from driftwire.alerts.policy import AlertPolicy, Thresholds

T = Thresholds(warning=0.1, critical=0.25)


def feed(policy: AlertPolicy, values: list[float | None]) -> list[tuple[int, str, str]]:
    out = []
    for i, v in enumerate(values):
        for t in policy.observe("c", v, T, now_ms=i):
            out.append((i, t.status, t.severity))
    return out


def test_fires_after_k_consecutive_breaches_only() -> None:
    assert feed(AlertPolicy(consecutive=3), [0.3, 0.3, 0.0, 0.3, 0.3]) == []
    assert feed(AlertPolicy(consecutive=3), [0.3, 0.3, 0.3]) == [(2, "firing", "critical")]


def test_one_alert_per_condition_not_per_window() -> None:
    events = feed(AlertPolicy(consecutive=1), [0.3] * 10)
    assert events == [(0, "firing", "critical")]


def test_hysteresis_keeps_firing_between_resolve_and_warning() -> None:
    # 0.09 is below warning (0.1) but above resolve (0.08): still firing
    events = feed(AlertPolicy(consecutive=1), [0.15, 0.09, 0.09, 0.07])
    assert events == [(0, "firing", "warning"), (3, "resolved", "warning")]


def test_insufficient_data_neither_fires_nor_resolves() -> None:
    events = feed(AlertPolicy(consecutive=2), [0.3, None, 0.3, None, None, 0.0])
    assert events == [(2, "firing", "critical"), (5, "resolved", "critical")]


def test_escalation_resolves_warning_and_fires_critical() -> None:
    events = feed(AlertPolicy(consecutive=1), [0.15, 0.3])
    assert events == [
        (0, "firing", "warning"),
        (1, "resolved", "warning"),
        (1, "firing", "critical"),
    ]


def test_no_deescalation_until_resolved() -> None:
    events = feed(AlertPolicy(consecutive=1), [0.3, 0.15, 0.15, 0.05])
    assert events == [(0, "firing", "critical"), (3, "resolved", "critical")]


def test_renotify_interval() -> None:
    policy = AlertPolicy(consecutive=1, renotify_ms=3)
    events = [t for i in range(8) for t in policy.observe("c", 0.3, T, now_ms=i)]
    assert [(t.status, t.renotify) for t in events] == [
        ("firing", False),
        ("firing", True),
        ("firing", True),
    ]
    assert {t.starts_at_ms for t in events} == {0}


def test_state_round_trip_resumes_alerts() -> None:
    policy = AlertPolicy(consecutive=2)
    policy.observe("c", 0.3, T, now_ms=0)
    restored = AlertPolicy(consecutive=2)
    restored.load_state(policy.to_state())
    assert [t.status for t in restored.observe("c", 0.3, T, now_ms=1)] == ["firing"]
