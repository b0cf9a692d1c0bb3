"""The alert policy: when a breaching statistic becomes one firing alert, and when it resolves.

The same rules hold for every kind of alert. A *condition* (model, version, segment, feature,
statistic...) is evaluated once per window. It fires after ``consecutive`` breaching windows,
stays firing (one alert, not one per window) until its value stays below the *resolve*
level (a ``resolve_ratio`` of the warning threshold, or the check's own level) for
``resolve_windows`` consecutive windows, and may be re-notified at an interval. Both sides
of that hysteresis hold a condition near its threshold: a value that wanders around the
warning level neither resolves nor re-fires every few windows. Measured on seeded window
series at 1.0-1.5x the threshold (sliding 5-bucket windows, noise sd 20-30% of the
threshold; ``tests/alerts/test_policy.py``): resolving below 80% after one window made 0.61
fire/resolve pairs per 24 windows; below 60% for 5 windows (the detector's defaults), 0.02.
Insufficient data neither fires nor resolves. An escalation (warning to critical)
resolves the warning alert and fires a critical one, because severity is a label and
Alertmanager treats alerts with different labels as different alerts; a firing alert never
de-escalates (a critical alert that calms to warning level stays critical until it resolves).

>>> p = AlertPolicy(consecutive=2)
>>> t = Thresholds(warning=0.1, critical=0.25)
>>> [len(p.observe("k", 0.3, t, now_ms=i)) for i in range(3)]   # fires at the 2nd window
[0, 1, 0]
>>> p.observe("k", 0.05, t, now_ms=3)[0].status                 # below resolve: resolved
'resolved'
>>> p = AlertPolicy(consecutive=1, resolve_windows=3, resolve_ratio=0.6)
>>> [len(p.observe("k", v, t, now_ms=i)) for i, v in enumerate([0.12, 0.05, 0.05, 0.07, 0.05])]
[1, 0, 0, 0, 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["warning", "critical"]
Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Breach levels of one statistic; ``resolve``, if set, is the level a firing alert must
    fall below to resolve (else the policy's ``resolve_ratio`` of ``warning``)."""

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
    calm: int = 0  # consecutive windows below the resolve level while firing


def check_hysteresis(consecutive: int, resolve_windows: int, resolve_ratio: float) -> None:
    """Refuse a policy's hysteresis settings outside their ranges (``ValueError``)."""
    if consecutive < 1:
        raise ValueError(f"consecutive must be >= 1, got {consecutive}")
    if resolve_windows < 1:
        raise ValueError(f"resolve_windows must be >= 1, got {resolve_windows}")
    if not 0 < resolve_ratio <= 1:
        raise ValueError(f"resolve_ratio must be in (0, 1], got {resolve_ratio}")


class AlertPolicy:
    """Per-condition state machines. Pure: the evaluation time is passed in."""

    def __init__(
        self,
        *,
        consecutive: int = 2,
        renotify_ms: int = 0,
        resolve_windows: int = 1,
        resolve_ratio: float = 0.8,
    ) -> None:
        check_hysteresis(consecutive, resolve_windows, resolve_ratio)
        self.consecutive = consecutive
        self.renotify_ms = renotify_ms
        self.resolve_windows = resolve_windows
        self.resolve_ratio = resolve_ratio
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
        confirm: int | None = None,
    ) -> list[Transition]:
        """Feed one window's value (``None``: insufficient data) and get the alert events.

        ``consecutive`` overrides the policy's K for this condition (a check that already
        counts windows in its value, such as "no data for N buckets", uses 1); such a check
        also resolves at its first window below the resolve level. ``confirm`` raises the
        breaching windows needed to fire to at least this many, for this window's value only
        (a breach whose evidence alone is not decisive: the drift rule's overlapping windows).
        """
        state = self._states.setdefault(key, _State())
        if value is None:
            return []
        level = thresholds.severity(value)
        out: list[Transition] = []
        if state.firing is None:
            state.streak = state.streak + 1 if level else 0
            needed = self.consecutive if consecutive is None else max(1, consecutive)
            if confirm is not None:
                needed = max(needed, confirm)
            if level and state.streak >= needed:
                state.firing, state.starts_at_ms, state.notified_ms = level, now_ms, now_ms
                out.append(Transition(key, "firing", level, now_ms, None))
            return out
        resolve = thresholds.resolve
        if resolve is None:
            resolve = self.resolve_ratio * thresholds.warning
        if value < resolve:
            state.calm += 1
            if state.calm >= (self.resolve_windows if consecutive is None else 1):
                out.append(Transition(key, "resolved", state.firing, state.starts_at_ms, now_ms))
                state.firing, state.streak, state.calm = None, 0, 0
            return out
        state.calm = 0
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
            k: [s.streak, s.firing, s.starts_at_ms, s.notified_ms, s.calm]
            for k, s in self._states.items()
            if s.streak or s.firing
        }

    def load_state(self, snapshot: dict[str, list[object]]) -> None:
        """Resume from :meth:`to_state` (a state of four numbers, without ``calm``, too)."""
        self._states = {
            k: _State(
                int(v[0]),  # type: ignore[call-overload]
                v[1],  # type: ignore[arg-type]
                int(v[2]),  # type: ignore[call-overload]
                int(v[3]),  # type: ignore[call-overload]
                int(v[4]) if len(v) > 4 else 0,  # type: ignore[call-overload]
            )
            for k, v in snapshot.items()
        }
