"""The alert policy: when a breaching statistic becomes one firing alert, and when it resolves.

The same rules hold for every kind of alert. A *condition* (model, version, segment, feature,
statistic...) is evaluated once per window. It fires after ``consecutive`` breaching windows,
stays firing (one alert, not one per window) until its value falls below the *resolve*
threshold (hysteresis: lower than the warning threshold), and may be re-notified at an
interval. Insufficient data neither fires nor resolves. An escalation (warning to critical)
resolves the warning alert and fires a critical one, because severity is a label and
Alertmanager treats alerts with different labels as different alerts; a firing alert never
de-escalates (a critical alert that calms to warning level stays critical until it resolves).

>>> p = AlertPolicy(consecutive=2)
>>> t = Thresholds(warning=0.1, critical=0.25)
>>> [len(p.observe("k", 0.3, t, now_ms=i)) for i in range(3)]   # fires at the 2nd window
[0, 1, 0]
>>> p.observe("k", 0.05, t, now_ms=3)[0].status                 # below resolve: resolved
'resolved'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["warning", "critical"]
Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Breach levels of one statistic; ``resolve`` defaults to 80% of ``warning``."""

    warning: float
    critical: float
    resolve: float | None = None

    @property
    def resolve_below(self) -> float:
        return self.resolve if self.resolve is not None else 0.8 * self.warning

    def severity(self, value: float) -> Severity | None:
        if value >= self.critical:
            return "critical"
        if value >= self.warning:
            return "warning"
        return None


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert event the policy decided on: fire, re-notify or resolve ``key``."""

    key: str
    status: Status
    severity: Severity
    starts_at_ms: int
    ends_at_ms: int | None
    renotify: bool = False


@dataclass(slots=True)
class _State:
    streak: int = 0
    firing: Severity | None = None
    starts_at_ms: int = 0
    notified_ms: int = 0


class AlertPolicy:
    """Per-condition state machines. Pure: the evaluation time is passed in."""

    def __init__(self, *, consecutive: int = 2, renotify_ms: int = 0) -> None:
        if consecutive < 1:
            raise ValueError(f"consecutive must be >= 1, got {consecutive}")
        self.consecutive = consecutive
        self.renotify_ms = renotify_ms
        self._states: dict[str, _State] = {}

    def firing(self) -> dict[str, Severity]:
        """The conditions firing now and their severity."""
        return {k: s.firing for k, s in self._states.items() if s.firing is not None}

    def starts_at(self, key: str) -> int | None:
        """When the firing alert of ``key`` started (``None`` if it is not firing)."""
        state = self._states.get(key)
        return None if state is None or state.firing is None else state.starts_at_ms

    def forget(self, key: str) -> None:
        """Drop the state of ``key`` (a condition that is no longer evaluated)."""
        self._states.pop(key, None)

    def observe(
        self,
        key: str,
        value: float | None,
        thresholds: Thresholds,
        *,
        now_ms: int,
        consecutive: int | None = None,
    ) -> list[Transition]:
        """Feed one window's value (``None``: insufficient data) and get the alert events.

        ``consecutive`` overrides the policy's K for this condition (a check that already
        counts windows in its value, such as "no data for N buckets", uses 1).
        """
        state = self._states.setdefault(key, _State())
        if value is None:
            return []
        level = thresholds.severity(value)
        out: list[Transition] = []
        if state.firing is None:
            state.streak = state.streak + 1 if level else 0
            needed = self.consecutive if consecutive is None else max(1, consecutive)
            if level and state.streak >= needed:
                state.firing, state.starts_at_ms, state.notified_ms = level, now_ms, now_ms
                out.append(Transition(key, "firing", level, now_ms, None))
            return out
        if value < thresholds.resolve_below:
            out.append(Transition(key, "resolved", state.firing, state.starts_at_ms, now_ms))
            state.firing, state.streak = None, 0
            return out
        if level == "critical" and state.firing == "warning":
            out.append(Transition(key, "resolved", state.firing, state.starts_at_ms, now_ms))
            state.firing, state.starts_at_ms, state.notified_ms = level, now_ms, now_ms
            out.append(Transition(key, "firing", level, now_ms, None))
        elif self.renotify_ms and now_ms - state.notified_ms >= self.renotify_ms:
            state.notified_ms = now_ms
            out.append(Transition(key, "firing", state.firing, state.starts_at_ms, None, True))
        return out

    def to_state(self) -> dict[str, list[object]]:
        """A JSON-able snapshot, so a restarted worker resumes its alerts."""
        return {
            k: [s.streak, s.firing, s.starts_at_ms, s.notified_ms]
            for k, s in self._states.items()
            if s.streak or s.firing
        }

    def load_state(self, snapshot: dict[str, list[object]]) -> None:
        self._states = {
            k: _State(int(v[0]), v[1], int(v[2]), int(v[3]))  # type: ignore[arg-type,call-overload]
            for k, v in snapshot.items()
        }
