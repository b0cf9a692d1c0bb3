"""Throughput alerts per (model, version), kind ``throughput``: no data, rate drops and jumps.

Each evaluated bucket adds the version's event count to a small series (:class:`RateState`):

* **no_data**: the version sent nothing for ``no_data_buckets`` consecutive buckets *while
  other traffic flowed* (another version or model seen by the same detector had events in
  those buckets). A bucket in which nothing at all arrived is unknown, not silent: a whole
  input outage is the Prometheus rule's business (no events consumed), and a detector must
  not page every model when the input resumes after a gap. Critical; resolves with the first
  bucket that has events again.
* **rate_drop** / **rate_jump**: the window's event count (the last ``window_buckets``
  buckets) against the count the version's *trailing* rate predicts: the mean of up to
  ``reference_buckets`` (60) earlier buckets. ``(expected + 1) / (observed + 1)`` for a drop
  and its inverse for a jump, warning at 5x and critical at 20x by default. Buckets of an
  anomalous window do not enter the trailing reference, so a lasting outage keeps firing
  instead of becoming the new normal, and a window still holding a no-data run's silent
  buckets is no rate drop (the no-data alert spoke).

Why a trailing rate and not the drift reference: a frozen first window or a baseline says
nothing about traffic volume (a baseline is training data; a first window catches a rollout's
canary share), and traffic has daily cycles; an hour-long trailing mean follows both and
still sees a sudden drop or jump within one window. A slow decline is no throughput alert.
The ratio needs ``min_count`` expected or observed events in the window; at 200 expected
events a factor of 2 is already 7 Poisson standard deviations, so the factors, not sampling
noise, decide.

>>> state, s = RateState(), ThroughputSettings(reference_buckets=4)
>>> for n in [100, 100, 100, 100, 100, 100, 3, 2]:
...     found = throughput_findings(state, n, True, s, {"model": "m", "model_version": "1"},
...                                 window_buckets=2, min_count=50)
>>> [(f.labels["statistic"], round(f.value, 1), f.level) for f in found]
[('no_data', 0.0, None), ('rate_drop', 33.5, 'critical'), ('rate_jump', 0.0, None)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import Thresholds
from driftwire.detect.settings import ThroughputSettings


@dataclass
class RateState:
    """A version's recent bucket counts, its trailing reference and its silent streak."""

    recent: list[int] = field(default_factory=list)  # the window's buckets, oldest first
    history: list[int] = field(default_factory=list)  # normal buckets before the window
    silent: int = 0  # consecutive silent buckets while other traffic flowed
    normal: bool = True  # the last window was not a rate anomaly
    quiet: int = 0  # buckets left until a no-data run has left the window

    def to_state(self) -> list[Any]:
        return [self.recent, self.history, self.silent, self.normal, self.quiet]

    @classmethod
    def from_state(cls, state: list[Any]) -> RateState:
        recent, history, silent, normal, quiet = state
        return cls(
            [int(x) for x in recent],
            [int(x) for x in history],
            int(silent),
            bool(normal),
            int(quiet),
        )

    def add(self, count: int, window_buckets: int, reference_buckets: int) -> None:
        self.silent = self.silent + 1 if count == 0 else 0
        self.recent.append(count)
        while len(self.recent) > window_buckets:
            leaving = self.recent.pop(0)
            if self.normal:
                self.history.append(leaving)
        del self.history[:-reference_buckets]


def throughput_findings(
    state: RateState,
    count: int,
    flowing: bool,
    settings: ThroughputSettings,
    labels: dict[str, str],
    *,
    window_buckets: int,
    min_count: int,
) -> list[Finding]:
    """Add one bucket's ``count`` and return the version's throughput findings.

    ``flowing``: whether other traffic arrived in the bucket; a silent bucket without it is
    unknown and changes nothing.
    """
    if count == 0 and not flowing:
        return []
    state.add(count, window_buckets, settings.reference_buckets)
    base = {**labels, "kind": "throughput", "segment": "all"}
    who = f"{labels['model']} {labels['model_version']}"
    out: list[Finding] = []
    no_data_breach = False
    if settings.no_data_buckets:
        n = settings.no_data_buckets
        silent = state.silent

        def no_data_text(status: str, threshold: float) -> str:
            if status == "firing":
                return f"{who} sends no events ({silent} buckets without any while others flow)"
            return f"{who} sends events again"

        out.append(
            Finding(
                labels={**base, "statistic": "no_data"},
                value=float(silent),
                thresholds=Thresholds(n, n, 0.5),
                headline=no_data_text,
                description=(
                    f"No event of {who} in the last {silent} buckets, while other models or "
                    "versions sent events in them. A stopped producer, a failed deployment, or "
                    "a retired version (then ignore it: it resolves when events return)."
                ),
                evidence={"silent_buckets": silent, "window_counts": list(state.recent)},
                consecutive=1,
                count=sum(state.recent),
                reference=_reference(state),
            )
        )
        no_data_breach = silent >= n
    if no_data_breach:
        state.quiet = window_buckets  # its silent buckets are no rate drop afterwards
    elif state.quiet:
        state.quiet -= 1
    observed = sum(state.recent)
    expected = None
    if (
        len(state.recent) >= window_buckets
        and len(state.history) >= max(1, settings.reference_buckets // 2)
        and not no_data_breach
        and not state.quiet
    ):
        expected = sum(state.history) / len(state.history) * window_buckets
        if max(expected, observed) < min_count:
            expected = None
    anomalous = False
    checks = (("rate_drop", settings.rate_drop), ("rate_jump", settings.rate_jump))
    for statistic, factors in checks:
        if factors is None:
            continue
        value = None
        if expected is not None:
            value = (expected + 1) / (observed + 1)
            value = value if statistic == "rate_drop" else 1.0 / value
        finding = _rate_finding(statistic, value, factors, observed, expected, state, base, who)
        anomalous = anomalous or finding.level is not None
        out.append(finding)
    state.normal = not anomalous and not no_data_breach
    return out


def _reference(state: RateState) -> dict[str, Any]:
    return {
        "kind": "trailing",
        "id": f"trailing:{len(state.history)} buckets",
        "count": sum(state.history),
    }


def _rate_finding(
    statistic: str,
    value: float | None,
    factors: tuple[float, float],
    observed: int,
    expected: float | None,
    state: RateState,
    base: dict[str, str],
    who: str,
) -> Finding:
    verb = "dropped" if statistic == "rate_drop" else "jumped"
    shown = "n/a" if value is None else f"{value:.1f}x"
    exp_text = "n/a" if expected is None else f"{expected:.0f}"

    def text(status: str, threshold: float) -> str:
        if status == "firing":
            return f"event rate of {who} {verb} {shown} (≥ {threshold:g}x its trailing rate)"
        return f"event rate of {who} back to its trailing rate ({shown})"

    return Finding(
        labels={**base, "statistic": statistic},
        value=value,
        thresholds=Thresholds(*factors),
        headline=text,
        description=(
            f"{observed} events of {who} in the window against {exp_text} expected from the "
            f"mean of {len(state.history)} earlier buckets."
        ),
        evidence={
            "observed": observed,
            "expected": None if expected is None else round(expected, 2),
            "window_counts": list(state.recent),
            "trailing_buckets": len(state.history),
        },
        count=observed,
        reference=_reference(state),
    )
