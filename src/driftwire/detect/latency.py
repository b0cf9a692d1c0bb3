"""Latency anomalies per (model, version, segment): spikes against a reference, and creep.

Every window's p50 / p95 / p99 (``detect.latency.quantiles``) come from the merged KLL
latency sketch (rank error ±1.3% at k = 200). Three checks turn them into findings of kind
``latency_anomaly``:

* **Spike** (statistic ``p50``, ``p95``, ``p99``): the window percentile against the same
  percentile of the reference, judged by *relevance* and *significance* (``rule:
  tail_count``, the default). Relevance: the ratio window / reference is at least
  ``min_ratio`` (1.5); a ratio is scale-free, so one default fits a 5 ms model and a 2 s one.
  Significance: the number of the window's requests above the reference percentile is beyond
  what the reference predicts, at ``alpha`` (1e-4, one-sided), by a binomial null at the
  reference's tail share, widened by the reference's own size, the sketches' rank error and
  the reference's variability between its slots (:class:`TailCount`; the statistics are in
  ``driftwire.detect._latency_tails``). Warning when both hold, critical at 10x
  (``spike_factor[1]``); a firing alert holds while the ratio is at least ``resolve_ratio``
  (1.2). The alert shows the ratio, the percentiles in ms, the tail count against its
  expectation, the p-value, the reference and the rule. ``rule: ratio`` is the earlier rule:
  the ratio alone, warning at 3x, critical at 10x (``spike_factor``).
* **SLO** (statistic ``p99_slo`` ...): optional absolute limits in ms (``slo_ms``), no
  reference needed.
* **Creep** (statistic ``p95_creep``): a change detector over the per-bucket series of p95 /
  reference p95, for a slow degradation the windows' tail counts are too noisy to confirm.

The reference is latency's own (``detect.latency.reference``, ``seasonal`` by default: the
same hour of each of the last ``seasonal_periods`` = 7 days; or ``trailing_window``,
``baseline``, or ``references`` to follow ``detect.references`` as drift does; an override
``detect.references.overrides["model/latency_ms"]`` wins) once it holds
``min_reference_count`` latencies in the segment, so a daily cycle is compared with the same
hours of earlier days; until then the latency of the drift reference (a baseline) when it has
``min_reference_count`` latencies, else the version's first complete window of live traffic
(a baseline built from training data rarely has latencies), and the alert's reference note
says so. A seasonal reference leaves out slots that hold an incident (a spike last Tuesday
must not hide this Tuesday's).

Why a day over 7 days by default (``load_tests/eval_latency.py``, 3 series per family): against
the baseline a daily cycle (2.2x trough to peak) fires 8-9 times per series and week, as the
relevance floor (1.5x) sits inside the cycle. A daily period over 4 days is quiet on daily
cycles (0.4 false alerts per week) but not on weekly ones (1.1: on Mondays the reference holds
the quiet weekend); over 7 days every day of the week is in it (0.4 and 0.7). A weekly period
needs a week of history before it takes over (daily cycles: 3.3 per week over the first 3
weeks) and, over one week, rests on one past hour (weekly cycles: 3.2).

A percentile ``q`` is judged only when at least ``min_tail_events`` events lie above it in
the window (and in the reference): p99 needs 500 events at the default of 5, p95 needs 100.
Fewer is *insufficient data*: a p99 resting on one or two events is one slow request.

**Creep detector: Page-Hinkley, not ADWIN.** The series is one value per bucket, ``x_t = ln(p95
of bucket t / reference p95)`` (against a fixed reference the same as ``ln(p95)``, as
Page-Hinkley is blind to a constant; against a seasonal one without the daily cycle);
Page-Hinkley (:mod:`driftwire.detect.page_hinkley`, river's test with ``mode="up"``)
accumulates ``x_t - mean(x) - delta`` and fires when that sum rises ``threshold`` above its
running minimum. It suits this series: it detects an increase of the
mean (one direction: faster is not an anomaly), its state is six numbers (so the detector
snapshot stays small JSON, written and read by :meth:`Creep.to_state` /
:meth:`Creep.from_state`, and a test checks that a restored detector continues bit-for-bit), and
its two parameters read in the series' units. ADWIN would need hundreds of buckets in its
window, keeps a bucket list as state and is two-sided. On the log scale the parameters are
relative: ``delta`` = 0.05 ignores changes below ~5%, ``threshold`` = 1.5 is the accumulated
log-excess needed. Simulated with 100 lognormal (sigma 0.3) latencies per bucket, 50 seeds: a
sustained +20% p95 fires after 10-21 buckets, +50% after 3-5, x2 after 2; a ramp of +1% per
bucket after 22-30 buckets (at 1.22-1.30x), +2% per bucket after 16-18 (1.32-1.36x); +10% never.
Per-bucket p95 noise (sd ``s`` of ``ln p95``: 0.09 for 50 such latencies) gives a false alarm
per excursion of about ``exp(-2 delta threshold / s^2)`` (1e-8 there; none in 3 x 60,000
simulated stationary buckets at 50, 100 and 1000 latencies per bucket); a bucket with fewer than
``creep_min_bucket_count`` latencies is left out. Noisier latencies (sigma 1) raise ``s`` about
threefold: raise ``creep_threshold`` or ``creep_min_bucket_count`` for them.

A detection *latches* the condition; it fires while the window p95 is at least the relevance
floor x the reference's, so a detection on noise that is not a real elevation stays silent,
and resolves below the resolve level: ``min_ratio`` / ``resolve_ratio`` (1.5 / 1.2, the same
as the percentiles) under ``rule: tail_count``, ``creep_min_ratio`` / ``creep_resolve_ratio``
(1.2 / 1.1) under ``rule: ratio``. Page-Hinkley's accumulated evidence is its significance, so
the creep can fire where a window's tail count is not significant (a reference with much
spread); when a spike condition breaches, the spike alert speaks and the creep latch is
cleared. (Realistic operations series wander by ±10% for hours, which made a 1.2x floor fire
a few times a week on stationary series in ``load_tests/eval_latency.py``.)

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> creep = Creep(LatencySettings())
>>> ramp = [1.0] * 20 + [1.0 + 0.02 * i for i in range(40)]    # +2% per bucket from 20 on
>>> fired = [t for t, f in enumerate(ramp) if creep.update(f * rng.lognormal(0, 0.03))]
>>> fired[0], round(ramp[fired[0]], 2)                          # 18 buckets into the ramp
(38, 1.36)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import Thresholds
from driftwire.detect._latency_tails import between_parts, dispersion, left_out, tail_pvalue
from driftwire.detect.page_hinkley import PageHinkley
from driftwire.detect.settings import LatencySettings
from driftwire.sketch.numeric import NumericSketch

INF = math.inf
DEFAULT_RANK_ERROR = NumericSketch().rank_error


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
    """The percentiles (ms) a window's latency is compared with, and where they come from.

    ``tails``: the reference's share of latencies above each percentile; ``spread``: the
    between-part variance of that share per event (:func:`~driftwire.detect._latency_tails.
    between_parts`, 0 for a reference without parts); ``rank_error``: its sketch's (0 while the
    sketch is exact). A reference stored by the earlier format has none of them: the share is
    then ``1 - q``, the spread 0 and the rank error the sketch default's.
    """

    quantiles: dict[str, float]
    count: int
    source: str  # the reference id, or "first window"
    tails: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)
    rank_error: float = DEFAULT_RANK_ERROR
    parts: int = 0
    left_out: int = 0  # seasonal parts left out as incidents

    @classmethod
    def seasonal(
        cls, parts: Sequence[NumericSketch], quantiles: tuple[float, ...], source: str
    ) -> LatencyReference | None:
        """The merge of ``parts`` without those that hold an incident (``None``: no part)."""
        dropped = set(left_out(list(parts)))
        kept = [s for i, s in enumerate(parts) if i not in dropped and s.count > 0]
        if not kept:
            return None
        merged = kept[0].copy()
        for s in kept[1:]:
            merged.merge(s)
        out = cls.of(merged, quantiles, source, kept)
        out.left_out = len(dropped)
        return out

    @classmethod
    def of(
        cls,
        sketch: NumericSketch,
        quantiles: tuple[float, ...],
        source: str,
        parts: Sequence[NumericSketch] = (),
    ) -> LatencyReference:
        found = percentiles(sketch, quantiles)
        eps = sketch_error(sketch)
        tails: dict[str, float] = {}
        spread: dict[str, float] = {}
        if found:
            names = list(found)
            above = 1.0 - sketch.cdf([found[n] for n in names])
            for name, share in zip(names, above, strict=True):
                tails[name] = float(share) if share > 0 else 1.0 / (sketch.count + 1)
                spread[name] = between_parts(parts, found[name], tails[name], eps)
        return cls(found, sketch.count, source, tails, spread, eps, len(parts))

    def tail(self, q: float) -> float:
        """Share of the reference's latencies above its ``q`` percentile."""
        return self.tails.get(quantile_name(q), 1.0 - q)

    def to_state(self) -> dict[str, Any]:
        return {
            "quantiles": self.quantiles,
            "count": self.count,
            "source": self.source,
            "tails": self.tails,
            "spread": self.spread,
            "rank_error": self.rank_error,
            "parts": self.parts,
            "left_out": self.left_out,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LatencyReference:
        return cls(
            {k: float(v) for k, v in state["quantiles"].items()},
            int(state["count"]),
            str(state["source"]),
            {k: float(v) for k, v in state.get("tails", {}).items()},
            {k: float(v) for k, v in state.get("spread", {}).items()},
            float(state.get("rank_error", DEFAULT_RANK_ERROR)),
            int(state.get("parts", 0)),
            int(state.get("left_out", 0)),
        )


def sketch_error(sketch: NumericSketch) -> float:
    """The sketch's rank error bound, 0 while it still holds every value."""
    return sketch.rank_error


@dataclass(frozen=True)
class TailCount:
    """The window's latencies above the reference's percentile against the null of no change."""

    name: str
    above: float  # window latencies above the reference percentile (from the sketch)
    n: int
    share: float  # the reference's share above it
    dispersion: float
    p_value: float
    alpha: float

    @property
    def expected(self) -> float:
        return self.n * self.share

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def text(self) -> str:
        return (
            f"{self.above:.0f} of {self.n} requests above the reference {self.name} where "
            f"{self.expected:.1f} are expected (p = {self.p_value:.2g} "
            f"{'<' if self.significant else '≥'} {self.alpha:g})"
        )

    def evidence(self) -> dict[str, Any]:
        return {
            "above": round(self.above, 1),
            "n": self.n,
            "expected": round(self.expected, 2),
            "reference_share": round(self.share, 5),
            "dispersion": round(self.dispersion, 3),
            "p_value": float(f"{self.p_value:.3g}"),
            "alpha": self.alpha,
        }


def tail_count(
    current: NumericSketch, reference: LatencyReference, q: float, alpha: float
) -> TailCount | None:
    """The tail-count test of percentile ``q`` (``None`` without a reference percentile)."""
    name = quantile_name(q)
    r = reference.quantiles.get(name)
    n = current.count
    if r is None or n == 0:
        return None
    above = n * (1.0 - float(current.cdf([r])[0]))
    share = reference.tail(q)
    spread = reference.spread.get(name, 0.0)
    d = dispersion(n, reference.count, share, sketch_error(current), reference.rank_error, spread)
    return TailCount(name, above, n, share, d, tail_pvalue(above, n, share, d), alpha)


def _tail_ok(q: float, n: int, settings: LatencySettings) -> bool:
    return (1.0 - q) * n >= settings.min_tail_events


class Creep:
    """Page-Hinkley (``mode="up"``) over ``ln(p95 / reference p95)`` per bucket, with a latch.

    The series is each bucket's p95 over the reference's p95 (the same reference as the window's,
    so a seasonal reference takes the daily cycle out of it). Against a constant reference it
    is the earlier ``ln(p95)`` series shifted by a constant, which Page-Hinkley does not see.
    A state of the earlier format (a series of ``ln(p95)``) is not continued: the detector
    starts a new series.
    """

    _SERIES = "ratio"  # the last entry of the state: what the series holds

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

    def update(self, ratio: float, now_ms: int = 0) -> bool:
        """Add one bucket's p95 / reference p95; ``True`` when Page-Hinkley detects an increase."""
        if not ratio > 0 or not math.isfinite(ratio):
            return False
        if self._ph.update(math.log(ratio)):
            if self.latched_ms is None:
                self.latched_ms = now_ms
            return True
        return False

    def to_state(self) -> list[Any]:
        """The detector's state (:meth:`PageHinkley.to_state`), the latch time, the series."""
        return [*self._ph.to_state(), self.latched_ms, self._SERIES]

    @classmethod
    def from_state(cls, settings: LatencySettings, state: list[Any]) -> Creep:
        if len(state) != 9 or state[8] != cls._SERIES:
            return cls(settings)  # the earlier ln(p95) series: start a new one
        *detector, latched, _ = state
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
    source = reference.source if reference is not None else "none yet"
    evidence: dict[str, Any] = {
        "quantiles_ms": {"current": window, "reference": ref_q},
        "rank_error": round(current.rank_error, 4),
    }
    if reference is not None:
        evidence["reference_source"] = reference.source
    out: list[Finding] = []
    tests: dict[str, TailCount] = {}
    spike_breach = False
    counting = settings.rule == "tail_count"
    for q in settings.quantiles:
        name = quantile_name(q)
        enough = n >= min_count and _tail_ok(q, n, settings)
        cur = window.get(name) if enough else None
        ref = ref_q.get(name)
        ratio: float | None = None
        test: TailCount | None = None
        if (
            cur is not None
            and ref is not None
            and ref > 0
            and reference is not None
            and _tail_ok(q, reference.count, settings)
        ):
            ratio = cur / ref
            test = tail_count(current, reference, q, settings.alpha)
            if test is not None:
                tests[name] = test
        if counting:
            warning, critical = settings.min_ratio, settings.spike_factor[1]
            thresholds = Thresholds(warning, critical, settings.resolve_ratio)
            value = ratio
            if ratio is not None and (test is None or not test.significant):
                value = min(ratio, math.nextafter(warning, 0.0))  # holds, never starts, an alert
            rule = (
                f"rule: window / reference {name} ≥ {warning:g}x (critical {critical:g}x) and "
                f"its tail count significant at {settings.alpha:g}; resolves below "
                f"{settings.resolve_ratio:g}x"
            )
        else:
            thresholds = Thresholds(*settings.spike_factor)
            value = ratio
            rule = (
                f"rule: window / reference {name} ≥ {thresholds.warning:g}x (critical "
                f"{thresholds.critical:g}x)"
            )

        def spike_text(
            status: str, threshold: float, name: str = name, ratio: Any = ratio, test: Any = test
        ) -> str:
            shown = "n/a" if ratio is None else f"{ratio:.2f}x"
            counted = "" if test is None or not counting else f"; {test.text()}"
            if status == "firing":
                return (
                    f"{name} latency of {who} spiked in {where} "
                    f"({shown} its reference ≥ {threshold:g}x{counted})"
                )
            return f"{name} latency of {who} back to normal in {where} ({shown} its reference)"

        finding_evidence = {**evidence, "statistic": f"window {name} / reference {name}"}
        if test is not None and counting:
            finding_evidence["tail_count"] = test.evidence()
        finding = Finding(
            labels={**base, "statistic": name},
            value=value,
            shown=ratio,
            thresholds=thresholds,
            headline=spike_text,
            description=(
                f"The window's {name} latency is {_ms(cur)} against {_ms(ref)} in the reference"
                f" ({source}); {n} latencies in the window"
                + ("" if test is None or not counting else f"; {test.text()}")
                + f". {rule.capitalize()}."
            ),
            evidence=finding_evidence,
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
        test = tests.get("p95") if counting else None
        out.append(
            _creep_finding(creep, window, ref_q, reference, spike_breach, settings, base, test)
        )
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
    test: TailCount | None,
) -> Finding:
    cur, ref = window.get("p95"), ref_q.get("p95")
    ratio = None if cur is None or ref is None or ref <= 0 else cur / ref
    superseded = spike_breach and creep.latched_ms is not None
    counting = settings.rule == "tail_count"
    floor, resolve = (
        (settings.min_ratio, settings.resolve_ratio)
        if counting
        else (settings.creep_min_ratio, settings.creep_resolve_ratio)
    )
    if spike_breach or (ratio is not None and ratio < resolve):
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
    counted = "" if test is None else f"; {test.text()}"

    def text(status: str, threshold: float) -> str:
        if status == "firing":
            return (
                f"p95 latency of {who} is creeping up in {where} "
                f"({shown} its reference ≥ {threshold:g}x{counted})"
            )
        if superseded:
            return f"p95 latency creep of {who} in {where} superseded by a latency spike alert"
        return f"p95 latency of {who} back to normal in {where} ({shown} its reference)"

    evidence: dict[str, Any] = {
        "quantiles_ms": {"current": window, "reference": ref_q},
        "page_hinkley": {
            "statistic": round(creep.statistic, 4),
            "threshold": settings.creep_threshold,
            "delta": settings.creep_delta,
            "buckets": creep.buckets,
            "detected_at": creep.latched_ms,
        },
    }
    if test is not None:
        evidence["tail_count"] = test.evidence()
    return Finding(
        labels={**base, "statistic": "p95_creep"},
        value=value,
        shown=ratio,
        thresholds=Thresholds(floor, INF, resolve),
        headline=text,
        description=(
            f"Page-Hinkley over ln(bucket p95 / reference p95) (delta {settings.creep_delta:g}, "
            f"threshold {settings.creep_threshold:g}) detected a sustained increase; the window "
            f"p95 is {_ms(cur)} against {_ms(ref)} in the reference "
            f"({reference.source if reference else 'none yet'}){counted}. Rule: a detection "
            f"fires while the window p95 is ≥ {floor:g}x the reference's"
            f"; it resolves below {resolve:g}x."
        ),
        evidence=evidence,
        consecutive=1,
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
