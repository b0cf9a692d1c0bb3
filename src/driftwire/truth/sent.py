"""What the alerts topic already holds, so a rebuilt tracker does not send it again.

The truth stage rebuilds its state by re-reading its inputs, and the rebuilt tracker emits
the alert transitions of the run before it again. :class:`SentAlerts` holds the latest
transition on the alerts topic per fingerprint (its status and evaluation time, read back by
the shell before the rebuild sends anything) and admits an emission only when it is new:
evaluated after that latest transition, and with the other status. So a fingerprint never
gets the same status twice in a row, and a transition evaluated at or before the latest one
the topic holds (a replay of the past) is not sent again; one the run before did not get to
send (stopped between two sends) is.

>>> sent = SentAlerts()
>>> sent.seed("f1", "firing", 1_000)
>>> sent.admit("f1", "firing", 1_000)      # the replay of the firing on the topic
False
>>> sent.admit("f1", "resolved", 5_000)    # the resolution the run before did not send
True
>>> sent.admit("f1", "resolved", 6_000)    # never the same status twice in a row
False
>>> sent.admit("f2", "firing", 500), sent.held
(True, 2)
"""

from __future__ import annotations

__all__ = ["SentAlerts"]


class SentAlerts:
    """The latest (status, evaluation time) per alert fingerprint; pure."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[str, int]] = {}

    @property
    def held(self) -> int:
        """Fingerprints with a transition on record."""
        return len(self._latest)

    def seed(self, fingerprint: str, status: str, evaluated_at_ms: int) -> None:
        """One transition read back from the alerts topic, in the topic's order (the later
        replaces the earlier)."""
        self._latest[fingerprint] = (status, evaluated_at_ms)

    def admit(self, fingerprint: str, status: str, evaluated_at_ms: int) -> bool:
        """Whether to send this transition; when so, it becomes the latest."""
        latest = self._latest.get(fingerprint)
        if latest is not None and (status == latest[0] or evaluated_at_ms <= latest[1]):
            return False
        self._latest[fingerprint] = (status, evaluated_at_ms)
        return True
