"""The alert policy for windows judged more than once, as their labels arrive.

A window of prediction time is judged when it is ``evaluation_delay`` old and again at later
ages (say 1 h, 6 h, 1 d, 3 d and the horizon), each time on every label joined so far. Each
age is a *stage*: the windows judged at one age form a series in prediction-time order, like
the one series of :class:`~driftwire.alerts.policy.AlertPolicy`. :class:`StagedPolicy` keeps
one alert per condition across its stages, with the same rules (``consecutive`` breaching
windows of one stage to fire, ``resolve_windows`` windows below ``resolve_ratio`` of the
warning level to resolve, warning escalates to critical and never de-escalates), and:

- A stage fires only for a window past the ones already alerted on (``covered``: the latest
  window end judged while the alert fired, or at which it resolved), so a degradation the
  first judgement alerted on is not sent again when an older stage sees it too, and one the
  first judgement could not see (too few labels yet) fires when a later one does.
- While an alert fires, the stage that fired it (the *driver*) decides its resolution; a
  younger stage (fresher windows) that breaches takes over as driver, a younger one that does
  not breach is not enough to resolve (its windows may lack the slow labels), and an older one
  judges windows already alerted on and changes nothing.

With one stage it decides exactly as :class:`~driftwire.alerts.policy.AlertPolicy` (without
re-notification), which ``tests/truth/test_rejudge.py`` checks on seeded series. State: a few
numbers per condition and stage.

>>> from driftwire.alerts.policy import Thresholds
>>> p, t = StagedPolicy(consecutive=2), Thresholds(1.0, 2.5)
>>> # the first judgement (age 0) sees nothing wrong in windows ending at 10 and 11 ...
>>> [p.observe("k", 0, end, 0.3, t, now_ms=end) for end in (10, 11)]
[[], []]
>>> # ... judged again at age 60 with all their labels, both breach: it fires once
>>> [len(p.observe("k", 60, end, 1.4, t, now_ms=end + 60)) for end in (10, 11)]
[0, 1]
>>> p.observe("k", 120, 11, 1.4, t, now_ms=131)  # the same windows at age 120: already sent
[]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from driftwire.alerts.policy import Severity, Thresholds, Transition, check_hysteresis

__all__ = ["StagedPolicy", "age_label"]

_BEGINNING = -(2**62)


def age_label(age_ms: int) -> str:
    """A judgement age as a short label: the largest unit that divides it.

    >>> [age_label(a) for a in (0, 300_000, 3_600_000, 86_400_000, 5_400_000, 1_500)]
    ['0s', '5m', '1h', '1d', '90m', '1500ms']
    """
    if age_ms == 0:
        return "0s"
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if age_ms % ms == 0:
            return f"{age_ms // ms}{unit}"
    return f"{age_ms}ms"


@dataclass(slots=True)
class _Condition:
    streaks: dict[int, int] = field(default_factory=dict)  # stage age -> breaching windows
    firing: Severity | None = None
    starts_at_ms: int = 0
    driver: int = 0  # the age of the stage that leads the firing alert
    calm: int = 0  # the driver's consecutive windows below the resolve level
    covered_ms: int = _BEGINNING  # windows ending at or before it were alerted on


class StagedPolicy:
    """One alert per condition over windows judged at several ages; see the module doc."""

    def __init__(
        self, *, consecutive: int = 2, resolve_windows: int = 1, resolve_ratio: float = 0.8
    ) -> None:
        check_hysteresis(consecutive, resolve_windows, resolve_ratio)
        self.consecutive = consecutive
        self.resolve_windows = resolve_windows
        self.resolve_ratio = resolve_ratio
        self._conditions: dict[str, _Condition] = {}

    def firing(self) -> dict[str, Severity]:
        """The conditions firing now and their severity."""
        return {k: c.firing for k, c in self._conditions.items() if c.firing is not None}

    def observe(
        self,
        key: str,
        age_ms: int,
        window_end_ms: int,
        value: float | None,
        thresholds: Thresholds,
        *,
        now_ms: int,
    ) -> list[Transition]:
        """Feed the value of the window ending at ``window_end_ms`` judged ``age_ms`` after it
        ended (``None``: insufficient data); returns the alert events."""
        c = self._conditions.setdefault(key, _Condition())
        if value is None:
            return []
        level = thresholds.severity(value)
        streak = c.streaks[age_ms] = c.streaks.get(age_ms, 0) + 1 if level else 0
        if c.firing is None:
            if level and streak >= self.consecutive and window_end_ms > c.covered_ms:
                c.firing, c.starts_at_ms, c.driver, c.calm = level, now_ms, age_ms, 0
                c.covered_ms = window_end_ms
                return [Transition(key, "firing", level, now_ms, None)]
            return []
        if age_ms > c.driver:
            return []  # windows older than the driver's: already alerted on
        out: list[Transition] = []
        if level:
            c.driver, c.calm = age_ms, 0
            c.covered_ms = max(c.covered_ms, window_end_ms)
            if level == "critical" and c.firing == "warning":
                out.append(Transition(key, "resolved", c.firing, c.starts_at_ms, now_ms))
                c.firing, c.starts_at_ms = level, now_ms
                out.append(Transition(key, "firing", level, now_ms, None))
            return out
        if age_ms < c.driver:
            return []  # a fresher window without the slow labels does not resolve it
        c.covered_ms = max(c.covered_ms, window_end_ms)
        resolve = thresholds.resolve
        if resolve is None:
            resolve = self.resolve_ratio * thresholds.warning
        if value >= resolve:
            c.calm = 0
            return out
        c.calm += 1
        if c.calm >= self.resolve_windows:
            out.append(Transition(key, "resolved", c.firing, c.starts_at_ms, now_ms))
            c.firing, c.calm = None, 0
        return out
