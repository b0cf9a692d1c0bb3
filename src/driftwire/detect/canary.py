"""Canary comparison: a newer live version against the version it replaces, same window.

While a model has two or more *live* versions (with events in the current window), each one
is compared with its *predecessor*: the live version first seen just before it. "First seen"
is the first evaluated bucket with events of the version (:class:`VersionLedger`, part of the
detector's snapshot); versions first seen in the same bucket are ordered by their version
string, compared naturally (``1.10.0`` after ``1.9.2``). So during a rollout of 1.5.0 next
to 1.4.2, 1.5.0 is the canary and 1.4.2 its predecessor; with three live versions 1.4.1,
1.4.2 and 1.5.0 there are two comparisons, 1.4.2 against 1.4.1 and 1.5.0 against 1.4.2.

Both sides are read over the same window (the last ``window_buckets`` buckets), per segment
both have events in and for all traffic (segment ``all``), so time of day, load and the input
population are the same on both sides and only the version differs. Findings of kind
``version_comparison`` carry ``model_version`` = the canary and ``feature``:

* ``prediction.score`` / ``prediction.label``: the drift statistics of ``detect.statistics``
  (default PSI) with the predecessor as the reference, thresholds from
  ``detect.canary.thresholds``, else ``detect.thresholds``, else the statistic's defaults, and
  the same noise floor as every drift statistic. Both sides need ``detect.min_count`` values:
  the predecessor is a live window, not a reference built to be large.
* ``latency_ms``: per percentile of ``detect.latency.quantiles`` (statistic ``p50``, ``p95``,
  ``p99``), canary percentile / predecessor percentile, warning at 2x and critical at 5x
  (``detect.canary.latency_factor``); judged only with ``min_count`` latencies and
  ``detect.latency.min_tail_events`` above the percentile on both sides. A faster canary is
  no anomaly. No distribution statistic for latency: at canary volumes PSI or KS flag a
  canary 10% slower, which no one should be paged for; a ratio of percentiles reads directly.

The predecessor goes into the alert's ``reference`` (``{"kind": "previous_version", "id":
"version:1.4.2", "count": n}``), not into the labels: labels stay (kind, model, canary
version, segment, feature, statistic), so the fingerprint is stable from firing to resolved.
A comparison ends when its pair does (the canary or its predecessor has no events in the
window any more, or another version became the predecessor); its conditions are then dropped
and a firing alert is resolved once, saying why.

**Retirement.** A version whose last events are ``detect.retire_after_buckets`` (1440: a day
of one-minute buckets) buckets older than the last events of another version of its model is
*retired*: the detector forgets its windows, references, rate and creep state, its conditions
(and their gauges) and its latency gauges, and resolves its firing alerts once. A model whose
versions all fall silent keeps them: that is an outage, not a rollout. A retired version that
sends again starts afresh, as a new version.

>>> ledger = VersionLedger()
>>> for version, bucket in [("1.4.2", 0), ("1.5.0", 60_000), ("1.4.10", 60_000)]:
...     ledger.observe(version, bucket)
>>> ledger.order()
['1.4.2', '1.4.10', '1.5.0']
>>> predecessors(ledger, {"1.4.2", "1.5.0"})
{'1.5.0': '1.4.2'}
>>> ledger.observe("1.5.0", 180_000)
>>> ledger.retired(after_ms=180_000)
['1.4.2']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.alert import iso
from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import Thresholds
from driftwire.detect.compare import Comparison, compare_sketches
from driftwire.detect.latency import percentiles
from driftwire.detect.settings import DetectSettings
from driftwire.detect.window import ALL_SEGMENTS, segmented
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch
from driftwire.sketch.profile import Profile

KIND = "version_comparison"
ALL = ALL_SEGMENTS
LATENCY = "latency_ms"


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order of version strings: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def reference_id(version: str) -> str:
    return f"version:{version}"


@dataclass
class VersionLedger:
    """First and last evaluated bucket with events of every version of one model."""

    seen: dict[str, tuple[int, int]] = field(default_factory=dict)

    def observe(self, version: str, bucket: int) -> None:
        first, last = self.seen.get(version, (bucket, bucket))
        self.seen[version] = (min(first, bucket), max(last, bucket))

    def first(self, version: str) -> int | None:
        return self.seen[version][0] if version in self.seen else None

    def order(self) -> list[str]:
        """Versions oldest first: by first-seen bucket, then by version string."""
        return sorted(self.seen, key=lambda v: (self.seen[v][0], version_key(v)))

    def retired(self, after_ms: int) -> list[str]:
        """Versions silent for ``after_ms`` while another version of the model sent later."""
        if after_ms <= 0 or len(self.seen) < 2:
            return []
        lasts = sorted((last for _, last in self.seen.values()), reverse=True)
        out = []
        for version, (_, last) in self.seen.items():
            others = lasts[1] if last == lasts[0] else lasts[0]
            if others - last >= after_ms:
                out.append(version)
        return out

    def forget(self, version: str) -> None:
        self.seen.pop(version, None)

    def to_state(self) -> dict[str, list[int]]:
        return {v: list(s) for v, s in self.seen.items()}

    @classmethod
    def from_state(cls, state: dict[str, list[int]]) -> VersionLedger:
        return cls({v: (int(s[0]), int(s[1])) for v, s in state.items()})


def predecessors(ledger: VersionLedger, live: Iterable[str]) -> dict[str, str]:
    """``{canary: predecessor}`` of the live versions (each but the oldest has one)."""
    alive = set(live)
    ordered = [v for v in ledger.order() if v in alive]
    return dict(zip(ordered[1:], ordered[:-1], strict=True))


def comparison_over(f: Finding, pairs: dict[str, str], live: set[str]) -> str | None:
    """Why the comparison the finding ``f`` belongs to has ended (``None``: it goes on)."""
    canary = f.labels["model_version"]
    before = f.evidence["versions"]["previous"]
    now = pairs.get(canary)
    if now == before:
        return None
    who = f"{f.labels['model']} {canary}"
    if now is not None:
        return f"{who} is compared with {now} now, no longer with {before}"
    over = f"comparison of {who} with {before} over"
    quiet = [v for v in (canary, before) if v not in live]
    return f"{over} ({quiet[0]} sent no events in the window)" if quiet else over


@dataclass
class Outputs:
    """One segment's merged prediction and latency sketches over a window."""

    events: int
    score: NumericSketch
    label: CategoricalSketch
    latency: NumericSketch

    @classmethod
    def of(cls, p: Profile) -> Outputs:
        return cls(
            p.n_events, p.prediction_score.copy(), p.prediction_label.copy(), p.latency_ms.copy()
        )

    def add(self, p: Profile) -> None:
        self.events += p.n_events
        self.score.merge(p.prediction_score)
        self.label.merge(p.prediction_label)
        self.latency.merge(p.latency_ms)


def outputs(buckets: Iterable[dict[str, Profile]], *, segments: bool) -> dict[str, Outputs]:
    """Per segment (if ``segments``) and for all traffic: the window's outputs, merged.

    Only the three output sketches are merged, not the features: cheap next to a full window.
    """
    out: dict[str, Outputs] = {}
    for profiles in buckets:
        for segment, p in profiles.items():
            for key in (segment, ALL) if segments else (ALL,):
                if key in out:
                    out[key].add(p)
                else:
                    out[key] = Outputs.of(p)
    if segments and not segmented(out):  # an unsegmented model: all traffic, once
        out = {k: v for k, v in out.items() if k == ALL}
    return out


@dataclass(frozen=True)
class Pair:
    """A canary and its predecessor in one model, with when each was first seen."""

    model: str
    canary: str
    previous: str
    canary_first_ms: int | None
    previous_first_ms: int | None


def comparison_findings(
    pair: Pair,
    mine: dict[str, Outputs],
    theirs: dict[str, Outputs],
    detect: DetectSettings,
    *,
    start: int,
    end: int,
) -> list[Finding]:
    """The ``version_comparison`` findings of one pair over the window ``[start, end)``."""
    settings = detect.model_copy(
        update={
            "thresholds": {**detect.thresholds, **detect.canary.thresholds},
            "min_reference_count": detect.min_count,
            "rule": "fixed",  # a pair of live versions: the fixed thresholds of detect.canary
        }
    )
    out: list[Finding] = []
    for segment in sorted(mine.keys() & theirs.keys()):
        cur, ref = mine[segment], theirs[segment]
        base = {
            "kind": KIND,
            "model": pair.model,
            "model_version": pair.canary,
            "segment": segment,
        }
        sides = (
            ("prediction.score", ref.score, cur.score),
            ("prediction.label", ref.label, cur.label),
        )
        for feature, ref_sketch, cur_sketch in sides:
            for c in compare_sketches(feature, ref_sketch, cur_sketch, settings):
                out.append(_prediction_finding(pair, base, feature, c, cur, ref, start, end))
        factors = detect.canary.latency_factor
        if factors is not None:
            out += _latency_findings(pair, base, cur, ref, factors, detect, start, end)
    return out


def _where(segment: str) -> str:
    return "all traffic" if segment == ALL else segment


def _reference(pair: Pair, count: int) -> dict[str, Any]:
    return {
        "kind": "previous_version",
        "id": reference_id(pair.previous),
        "count": count,
        "note": f"The traffic of {pair.model} {pair.previous} (the version {pair.canary} "
        "replaces) over the same window.",
    }


def _versions(pair: Pair) -> dict[str, Any]:
    return {
        "canary": pair.canary,
        "previous": pair.previous,
        "canary_first_seen": iso(pair.canary_first_ms),
        "previous_first_seen": iso(pair.previous_first_ms),
    }


def _act(pair: Pair) -> str:
    return (
        f"If {pair.canary} should behave like {pair.previous}, hold or roll back its rollout; "
        f'if the change is intended, silence kind="{KIND}", model="{pair.model}", '
        f'model_version="{pair.canary}".'
    )


def _prediction_finding(
    pair: Pair,
    base: dict[str, str],
    feature: str,
    c: Comparison,
    cur: Outputs,
    ref: Outputs,
    start: int,
    end: int,
) -> Finding:
    r = c.result
    who = f"canary {pair.canary} of {pair.model}"
    where = _where(base["segment"])
    value = "n/a" if r.value is None else f"{r.value:.3g}"
    stat = r.statistic.upper()

    def headline(status: str, threshold: float) -> str:
        if status == "firing":
            return (
                f"{who} predicts differently from {pair.previous} in {where}: {stat} {value} "
                f"≥ {threshold:g} over the same window, {r.n_current:,} vs {r.n_reference:,} "
                "events"
            )
        return f"{who} predicts like {pair.previous} again in {where} ({stat} {value})"

    share = cur.events / max(cur.events + ref.events, 1)
    return Finding(
        labels={**base, "feature": feature, "statistic": r.statistic},
        value=r.value,
        thresholds=Thresholds(c.warning, c.critical),
        headline=headline,
        description=(
            f"{r.statistic} of {feature} between {pair.model} {pair.canary} (first seen "
            f"{iso(pair.canary_first_ms)}; {r.n_current} values) and {pair.previous}, the "
            f"version it replaces (first seen {iso(pair.previous_first_ms)}; {r.n_reference} "
            f"values), over the same window {iso(start)} – {iso(end)} in {where} is {value} "
            f"(error bound ±{r.bound:.2g}); {pair.canary} had {share:.0%} of the two versions' "
            f"events. {_act(pair)}"
        ),
        evidence={**r.evidence, "versions": _versions(pair), "canary_share": round(share, 4)},
        bound=r.bound,
        count=cur.events,
        reference=_reference(pair, ref.events),
    )


def _latency_findings(
    pair: Pair,
    base: dict[str, str],
    cur: Outputs,
    ref: Outputs,
    factors: tuple[float, float],
    detect: DetectSettings,
    start: int,
    end: int,
) -> list[Finding]:
    qs = detect.latency.quantiles
    mine, theirs = percentiles(cur.latency, qs), percentiles(ref.latency, qs)
    n_cur, n_ref = cur.latency.count, ref.latency.count
    who = f"canary {pair.canary} of {pair.model}"
    where = _where(base["segment"])
    out: list[Finding] = []
    for q in qs:
        name = f"p{q * 100:g}"
        enough = all(
            n >= detect.min_count and (1.0 - q) * n >= detect.latency.min_tail_events
            for n in (n_cur, n_ref)
        )
        a, b = mine.get(name), theirs.get(name)
        value = a / b if enough and a is not None and b is not None and b > 0 else None
        shown = "n/a" if value is None else f"{value:.2f}x"
        times = f"{_ms(a)} vs {_ms(b)}"

        def headline(
            status: str, threshold: float, name: str = name, shown: str = shown, times: str = times
        ) -> str:
            if status == "firing":
                return (
                    f"{who} is slower than {pair.previous} in {where}: {name} latency {times} = "
                    f"{shown} ≥ {threshold:g}x over the same window, {n_cur:,} vs {n_ref:,} "
                    "events"
                )
            return f"{who} as fast as {pair.previous} again in {where} ({name} {shown})"

        out.append(
            Finding(
                labels={**base, "feature": LATENCY, "statistic": name},
                value=value,
                thresholds=Thresholds(*factors),
                headline=headline,
                description=(
                    f"The {name} latency of {pair.model} {pair.canary} is {times} of "
                    f"{pair.previous}, the version it replaces, over the same window "
                    f"{iso(start)} – {iso(end)} in {where} ({n_cur} vs {n_ref} latencies). "
                    f"{_act(pair)}"
                ),
                evidence={
                    "quantiles_ms": {"canary": mine, "previous": theirs},
                    "versions": _versions(pair),
                    "statistic": f"canary {name} / previous {name}",
                },
                count=cur.events,
                reference=_reference(pair, ref.events),
            )
        )
    return out


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
