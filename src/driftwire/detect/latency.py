"""Latency anomalies per (model, version, segment): spikes against a reference, and creep.

Every window's p50 / p95 / p99 (``detect.latency.quantiles``) come from the merged KLL
latency sketch (rank error ±1.3% at k = 200). Three checks turn them into findings of kind
``latency_anomaly``:

* **Spike** (statistic ``p50``, ``p95``, ``p99``): the window percentile divided by the same
  percentile of the reference; warning at 3x, critical at 10x (``spike_factor``). A ratio is
  scale-free, so one default fits a 5 ms model and a 2 s one. The reference is the latency of
  the drift reference (a baseline) when it has ``min_reference_count`` latencies, else the
  version's first complete window of live traffic (a baseline built from training data
  rarely has latencies).
* **SLO** (statistic ``p99_slo`` ...): optional absolute limits in ms (``slo_ms``), no
  reference needed.
* **Creep** (statistic ``p95_creep``): a change detector over the per-bucket p95 series, for
  a slow degradation (or a modest sustained step) that never reaches the spike factor.

A percentile ``q`` is judged only when at least ``min_tail_events`` events lie above it in
the window (and in the reference): p99 needs 500 events at the default of 5, p95 needs 100.
Fewer is *insufficient data*: a p99 resting on one or two events is one slow request.

**Creep detector: Page-Hinkley, not ADWIN.** The series is one value per bucket, ``x_t =
ln(p95 of bucket t)``; Page-Hinkley (:mod:`driftwire.detect.page_hinkley`, river's test with
``mode="up"``) accumulates ``x_t - mean(x) - delta`` and fires when that sum rises
``threshold`` above its running minimum. It suits this series: it detects an increase of the
mean (one direction: faster is not an anomaly), its state is six numbers (so the detector
snapshot stays small JSON, written and read by :meth:`Creep.to_state` /
:meth:`Creep.from_state`; a test checks that a restored detector continues bit-for-bit), and
its two parameters read in the series' units. ADWIN would need hundreds of buckets in its
window, keeps a bucket list as state and is two-sided. On the log scale the parameters are
relative: ``delta`` = 0.05 ignores changes below ~5%, ``threshold`` = 1.5 is the accumulated
log-excess needed. Simulated with 100 lognormal (sigma 0.3) latencies per bucket, 50 seeds:
a sustained +20% p95 fires after 10-21 buckets, +50% after 3-5, x2 after 2; a ramp of +1%
per bucket after 22-30 buckets (at 1.22-1.30x), +2% per bucket after 16-18 (1.32-1.36x);
+10% never. Per-bucket p95 noise (sd ``s`` of ``ln p95``: 0.09 for 50 such latencies) gives
a false alarm per excursion of about ``exp(-2 delta threshold / s^2)`` (1e-8 there; none in
3 x 60,000 simulated stationary buckets at 50, 100 and 1000 latencies per bucket); a bucket
with fewer than ``creep_min_bucket_count`` latencies is left out. Noisier latencies (sigma
1) raise ``s`` about threefold: raise ``creep_threshold`` or ``creep_min_bucket_count`` for
them.

A detection *latches* the condition; it fires while the window p95 is at least
``creep_min_ratio`` (1.2) x the reference's, so a detection on noise that is not a real
elevation stays silent, and it resolves below ``creep_resolve_ratio`` (1.1). When a spike
condition breaches, the spike alert speaks and the creep latch is cleared.

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> creep = Creep(LatencySettings())
>>> ramp = [1.0] * 20 + [1.0 + 0.02 * i for i in range(40)]    # +2% per bucket from 20 on
>>> fired = [t for t, f in enumerate(ramp) if creep.update(12.0 * f * rng.lognormal(0, 0.03))]
>>> fired[0], round(ramp[fired[0]], 2)                          # 18 buckets into the ramp
(38, 1.36)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import Thresholds
from driftwire.detect.page_hinkley import PageHinkley
from driftwire.detect.settings import LatencySettings
from driftwire.sketch.numeric import NumericSketch

INF = math.inf


def quantile_name(q: float) -> str:
    """``0.99`` → ``"p99"``, ``0.999`` → ``"p99.9"``."""
    return f"p{q * 100:g}"


def percentiles(sketch: NumericSketch, quantiles: tuple[float, ...]) -> dict[str, float]:
    """The sketch's values at ``quantiles`` by name (empty when the sketch is empty)."""
    if sketch.count == 0:
        return {}
    values = sketch.quantiles(list(quantiles))
    return {quantile_name(q): float(v) for q, v in zip(quantiles, values, strict=True)}


@dataclass
class LatencyReference:
    """The percentiles (ms) a window's latency is compared with, and where they come from."""

    quantiles: dict[str, float]
    count: int
    source: str  # the reference id, or "first window"

    @classmethod
    def of(
        cls, sketch: NumericSketch, quantiles: tuple[float, ...], source: str
    ) -> LatencyReference:
        return cls(percentiles(sketch, quantiles), sketch.count, source)

    def to_state(self) -> dict[str, Any]:
        return {"quantiles": self.quantiles, "count": self.count, "source": self.source}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LatencyReference:
        return cls(
            {k: float(v) for k, v in state["quantiles"].items()},
            int(state["count"]),
            str(state["source"]),
        )


def _tail_ok(q: float, n: int, settings: LatencySettings) -> bool:
    return (1.0 - q) * n >= settings.min_tail_events


class Creep:
    """Page-Hinkley (``mode="up"``) over ``ln(p95)`` per bucket, with a latch."""

    def __init__(self, settings: LatencySettings, detector: PageHinkley | None = None) -> None:
        self._s = settings
        self._ph = detector if detector is not None else _page_hinkley(settings)
        self.latched_ms: int | None = None  # evaluation time of the detection that latched

    @property
    def buckets(self) -> int:
        """Buckets in the series since the last reset."""
        return self._ph.n

    @property
    def statistic(self) -> float:
        """How far the cumulative sum is above its minimum (fires at ``creep_threshold``)."""
        return float(self._ph.statistic)

    def update(self, p95_ms: float, now_ms: int = 0) -> bool:
        """Add one bucket's p95; ``True`` when Page-Hinkley detects an increase here."""
        if not p95_ms > 0 or not math.isfinite(p95_ms):
            return False
        if self._ph.update(math.log(p95_ms)):
            if self.latched_ms is None:
                self.latched_ms = now_ms
            return True
        return False

    def to_state(self) -> list[Any]:
        """The detector's state (:meth:`PageHinkley.to_state`) and the latch time."""
        return [*self._ph.to_state(), self.latched_ms]

    @classmethod
    def from_state(cls, settings: LatencySettings, state: list[Any]) -> Creep:
        *detector, latched = state
        out = cls(settings, _page_hinkley(settings, detector))
        out.latched_ms = None if latched is None else int(latched)
        return out


def _page_hinkley(settings: LatencySettings, state: list[Any] | None = None) -> PageHinkley:
    """A new creep detector, or the one ``state`` holds, with the parameters of ``settings``."""
    if state is None:
        return PageHinkley(
            min_instances=settings.creep_min_buckets,
            delta=settings.creep_delta,
            threshold=settings.creep_threshold,
            mode="up",
        )
    return PageHinkley.from_state(
        state,
        min_instances=settings.creep_min_buckets,
        delta=settings.creep_delta,
        threshold=settings.creep_threshold,
        mode="up",
    )


def latency_findings(
    current: NumericSketch,
    reference: LatencyReference | None,
    creep: Creep | None,
    settings: LatencySettings,
    labels: dict[str, str],
    *,
    min_count: int,
    consecutive: int,
) -> list[Finding]:
    """Spike, SLO and creep findings of one (version, segment) window.

    ``labels`` hold model, model_version and segment; ``reference`` is ``None`` when no
    reference has enough latencies yet (spikes and creep are then insufficient data).
    """
    n = current.count
    window = percentiles(current, settings.quantiles)
    ref_q = reference.quantiles if reference is not None else {}
    where = "all traffic" if labels["segment"] == "all" else labels["segment"]
    who = f"{labels['model']} {labels['model_version']}"
    base = {**labels, "kind": "latency_anomaly"}
    evidence: dict[str, Any] = {
        "quantiles_ms": {"current": window, "reference": ref_q},
        "rank_error": round(current.rank_error, 4),
    }
    if reference is not None:
        evidence["reference_source"] = reference.source
    out: list[Finding] = []
    spike_breach = False
    for q in settings.quantiles:
        name = quantile_name(q)
        enough = n >= min_count and _tail_ok(q, n, settings)
        cur = window.get(name) if enough else None
        ref = ref_q.get(name)
        value: float | None = None
        if (
            cur is not None
            and ref is not None
            and ref > 0
            and reference is not None
            and _tail_ok(q, reference.count, settings)
        ):
            value = cur / ref

        def spike_text(status: str, threshold: float, name: str = name, value: Any = value) -> str:
            shown = "n/a" if value is None else f"{value:.2f}x"
            if status == "firing":
                return (
                    f"{name} latency of {who} spiked in {where} "
                    f"({shown} its reference ≥ {threshold:g}x)"
                )
            return f"{name} latency of {who} back to normal in {where} ({shown} its reference)"

        warning, critical = settings.spike_factor
        finding = Finding(
            labels={**base, "statistic": name},
            value=value,
            thresholds=Thresholds(warning, critical),
            headline=spike_text,
            description=(
                f"The window's {name} latency is {_ms(cur)} against {_ms(ref)} in the reference"
                f" ({reference.source if reference else 'none yet'}); {n} latencies in the window."
            ),
            evidence={**evidence, "statistic": f"window {name} / reference {name}"},
            bound=None,
            consecutive=consecutive,
            count=n,
        )
        spike_breach = spike_breach or finding.level is not None
        out.append(finding)
        slo = settings.slo_ms.get(name)
        if slo is not None:

            def slo_text(status: str, threshold: float, name: str = name, cur: Any = cur) -> str:
                if status == "firing":
                    return (
                        f"{name} latency of {who} in {where} breaks its SLO "
                        f"({_ms(cur)} ≥ {threshold:g} ms)"
                    )
                return f"{name} latency of {who} in {where} within its SLO again ({_ms(cur)})"

            out.append(
                Finding(
                    labels={**base, "statistic": f"{name}_slo"},
                    value=cur,
                    thresholds=Thresholds(*slo),
                    headline=slo_text,
                    description=(
                        f"The window's {name} latency is {_ms(cur)}; the SLO is {slo[0]:g} ms "
                        f"(warning) / {slo[1]:g} ms (critical); {n} latencies in the window."
                    ),
                    evidence=evidence,
                    consecutive=consecutive,
                    count=n,
                )
            )
    if creep is not None and settings.creep:
        out.append(_creep_finding(creep, window, ref_q, reference, spike_breach, settings, base))
        out[-1].count = n
    return out


def _creep_finding(
    creep: Creep,
    window: dict[str, float],
    ref_q: dict[str, float],
    reference: LatencyReference | None,
    spike_breach: bool,
    settings: LatencySettings,
    base: dict[str, str],
) -> Finding:
    cur, ref = window.get("p95"), ref_q.get("p95")
    ratio = None if cur is None or ref is None or ref <= 0 else cur / ref
    superseded = spike_breach and creep.latched_ms is not None
    if spike_breach or (ratio is not None and ratio < settings.creep_resolve_ratio):
        creep.latched_ms = None  # the spike speaks, or the latency is back
    if ratio is None:
        value = None
    elif creep.latched_ms is None:
        value = 0.0  # not a detected change: below the resolve level for the policy
    else:
        value = ratio
    where = "all traffic" if base["segment"] == "all" else base["segment"]
    who = f"{base['model']} {base['model_version']}"
    shown = "n/a" if ratio is None else f"{ratio:.2f}x"

    def text(status: str, threshold: float) -> str:
        if status == "firing":
            return (
                f"p95 latency of {who} is creeping up in {where} "
                f"({shown} its reference ≥ {threshold:g}x)"
            )
        if superseded:
            return f"p95 latency creep of {who} in {where} superseded by a latency spike alert"
        return f"p95 latency of {who} back to normal in {where} ({shown} its reference)"

    return Finding(
        labels={**base, "statistic": "p95_creep"},
        value=value,
        shown=ratio,
        thresholds=Thresholds(settings.creep_min_ratio, INF, settings.creep_resolve_ratio),
        headline=text,
        description=(
            f"Page-Hinkley over ln(p95) per bucket (delta {settings.creep_delta:g}, threshold "
            f"{settings.creep_threshold:g}) detected a sustained increase; the window p95 is "
            f"{_ms(cur)} against {_ms(ref)} in the reference "
            f"({reference.source if reference else 'none yet'})."
        ),
        evidence={
            "quantiles_ms": {"current": window, "reference": ref_q},
            "page_hinkley": {
                "statistic": round(creep.statistic, 4),
                "threshold": settings.creep_threshold,
                "delta": settings.creep_delta,
                "buckets": creep.buckets,
                "detected_at": creep.latched_ms,
            },
        },
        consecutive=1,
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
