"""Data-quality checks per (model, version, segment, feature), kind ``data_quality``.

Separate from drift: drift compares the distribution of the values that arrived; quality
asks whether values arrive as they should. Each check is a *rate* in the window against the
same rate in the reference (the drift reference), with a sample-size floor on the threshold
so that a small window cannot fire on chance (the same idea as the drift statistics' noise
floor in :mod:`driftwire.detect.compare`):

==================  ===================================================  =================
statistic           value                                                warning/critical
==================  ===================================================  =================
missing_rate        window missing share - reference missing share       0.05 / 0.20
wrong_type          increase of the share of values of the other kind    0.01 / 0.05
non_finite          increase of the share of NaN / ±inf (numeric)        0.01 / 0.05
unseen_share        window share in categories the reference never saw  0.05 / 0.20
new_category        share of a category the reference never saw, once   0.005 / never
                    a test on its values since it first appeared says
                    it is above half the threshold (see below)
feature_added       share of window events carrying a feature the        0.01 / never
                    reference never had (schema change)
feature_removed     share of reference events that carried a feature     0.05 / 0.50
                    now absent from every window event (schema change)
==================  ===================================================  =================

A *missing* value is a null or an event that lacked the key (counted per profile by the
profiler): ``missing = events - values of any kind``. The increases are held against
``max(threshold, z * se)``, where ``se`` is the pooled standard error of the difference of
two proportions at the two sample sizes (a one-sided two-proportion z-test at ``z`` = 4,
p = 3e-5): with 200 window events and a 10% reference missing rate the floor is 9 points,
with 20,000 it is the configured 5. For ``unseen_share`` the reference proportion is its own
Good–Turing estimate of unseen mass (categories seen once / values), the share of never-seen
categories a same-distribution window is expected to show. A feature absent from a whole
window is significant only when the reference would have put enough events there:
``p0 * n >= -ln(p)`` for the z's one-sided ``p`` (10.4 events at z = 4), and symmetrically a
new feature must exceed what could have hidden unseen in the reference (``10.4 / n0``).

``new_category`` names each reported never-seen category, with its share, count and the test's
p-value, in the summary and the evidence: a new category carrying 0.5% of traffic is worth a
look long before all unseen categories together reach 5%. One window's counts cannot tell 1%
from 0.2% at a thousand events, so the detector counts each one since it first appeared,
across windows, and reports it by a one-sided binomial test
(:mod:`driftwire.detect.new_categories`); without those counts (an offline report) the window
is that test's only look. It fires in the first breaching window (its K is 1: the test has
weighed the buckets already). Its floor is what the reference
could have missed: a category of share ``p`` is absent from ``n0`` reference values with
probability ``(1 - p) ** n0``, below the z's one-sided ``p`` once ``p >= 10.4 / n0`` (0.5% at
2,100 reference values); a reference that stopped counting exactly (more than 256
categories) could also have pruned a category with up to its count error.

Below ``min_count`` window events or ``min_reference_count`` reference events every check
is *insufficient data*.

>>> from driftwire.sketch.profile import Profile
>>> from driftwire.detect.settings import QualitySettings
>>> ref, cur = Profile(), Profile()
>>> ref.update([{"age": 30 + i % 7} for i in range(2000)])
>>> cur.update([{"age": None if i % 4 == 0 else 30} for i in range(1000)])
>>> labels = {"model": "m", "model_version": "1", "segment": "all"}
>>> found = quality_findings(ref, cur, QualitySettings(), labels, min_count=200,
...                          min_reference_count=1000)
>>> [(f.labels["statistic"], f.value, f.level) for f in found if f.level]
[('missing_rate', 0.25, 'critical')]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from driftwire.alerts.finding import Finding
from driftwire.alerts.policy import Thresholds
from driftwire.detect.new_categories import Announced, NewCategories, judged
from driftwire.detect.settings import QualitySettings
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch
from driftwire.sketch.profile import Profile

INF = math.inf

DEFAULT_QUALITY_THRESHOLDS: dict[str, tuple[float, float]] = {
    "missing_rate": (0.05, 0.20),
    "wrong_type": (0.01, 0.05),
    "non_finite": (0.01, 0.05),
    "unseen_share": (0.05, 0.20),
    "new_category": (0.005, INF),
    "feature_added": (0.01, INF),
    "feature_removed": (0.05, 0.50),
}

QUALITY_STATISTICS = tuple(DEFAULT_QUALITY_THRESHOLDS)


def one_sided_p(z: float) -> float:
    """Upper tail of the standard normal at ``z``."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def proportion_floor(x0: float, n0: int, x1: float, n1: int, z: float) -> float:
    """``z`` times the pooled standard error of ``x1/n1 - x0/n0`` (two-proportion z-test).

    >>> round(proportion_floor(100, 1000, 30, 200, 4.0), 4)   # 10% vs 15% at n 1000 / 200
    0.0963
    """
    if n0 <= 0 or n1 <= 0:
        return INF
    pooled = min(max((x0 + x1) / (n0 + n1), 0.0), 1.0)
    return z * math.sqrt(pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1))


@dataclass(frozen=True, slots=True)
class FeatureCounts:
    """How one feature's values arrived in one profile."""

    events: int
    present: int  # values of any kind (right, wrong, non-finite)
    wrong: int
    non_finite: int
    sketch: NumericSketch | CategoricalSketch | None

    @property
    def missing(self) -> int:
        return max(self.events - self.present, 0)


def feature_counts(profile: Profile, name: str) -> FeatureCounts | None:
    """The feature's counts, or ``None`` when no event of the profile carried the key."""
    sketch = profile.feature(name)
    wrong = profile.wrong_type.get(name, 0)
    if sketch is None and name not in profile.untyped_missing and not wrong:
        return None
    non_finite = sketch.non_finite if isinstance(sketch, NumericSketch) else 0
    valid = sketch.count if sketch is not None else 0
    return FeatureCounts(profile.n_events, valid + non_finite + wrong, wrong, non_finite, sketch)


def _thresholds(
    settings: QualitySettings, statistic: str, floor: float, floor_critical: bool = True
) -> Thresholds:
    warning, critical = settings.thresholds.get(statistic, DEFAULT_QUALITY_THRESHOLDS[statistic])
    floor = floor if math.isfinite(floor) else INF
    return Thresholds(max(warning, floor), max(critical, floor) if floor_critical else critical)


def quality_findings(
    reference: Profile,
    current: Profile,
    settings: QualitySettings,
    labels: dict[str, str],
    *,
    min_count: int,
    min_reference_count: int,
    consecutive: int | None = None,
    also: Iterable[str] = (),
    new_categories: NewCategories | None = None,
) -> list[Finding]:
    """Every quality check of every feature either side knows (plus ``also``).

    ``new_categories``: the version's never-seen categories counted since they first appeared
    (the detector's); without it each window is judged alone.
    """
    names = set(reference.features) | set(reference.untyped_missing) | set(reference.wrong_type)
    names |= set(current.features) | set(current.untyped_missing) | set(current.wrong_type)
    names |= set(also)
    enough = current.n_events >= min_count and reference.n_events >= min_reference_count
    out: list[Finding] = []
    for name in sorted(names):
        ref, cur = feature_counts(reference, name), feature_counts(current, name)
        check = _Check(settings, labels, name, enough, consecutive, new_categories)
        out.extend(check.all(ref, cur, reference.n_events, current.n_events))
    return out


class _Check:
    """The quality findings of one feature in one (version, segment) window."""

    def __init__(
        self,
        settings: QualitySettings,
        labels: dict[str, str],
        name: str,
        enough: bool,
        consecutive: int | None,
        tracked: NewCategories | None = None,
    ) -> None:
        self.s, self.name = settings, name
        self.tracked, self.segment = tracked, labels["segment"]
        self.enough, self.consecutive = enough, consecutive
        self.labels = {**labels, "kind": "data_quality", "feature": name}
        self.where = "all traffic" if labels["segment"] == "all" else labels["segment"]
        self.who = f"{labels['model']} {labels['model_version']}"
        self.lack = -math.log(one_sided_p(settings.z))  # expected events an absence needs

    def all(
        self, ref: FeatureCounts | None, cur: FeatureCounts | None, n0: int, n1: int
    ) -> list[Finding]:
        if ref is not None and cur is not None:
            out = [
                self._rate("missing_rate", ref.missing, n0, cur.missing, n1, "missing"),
                self._rate("wrong_type", ref.wrong, n0, cur.wrong, n1, "of the wrong type"),
            ]
            if isinstance(cur.sketch, NumericSketch) or isinstance(ref.sketch, NumericSketch):
                out.append(
                    self._rate("non_finite", ref.non_finite, n0, cur.non_finite, n1, "NaN/inf")
                )
            if isinstance(ref.sketch, CategoricalSketch) and isinstance(
                cur.sketch, CategoricalSketch
            ):
                out.append(self._unseen(ref.sketch, cur.sketch))
                out.append(self._new_categories(ref.sketch, cur.sketch))
            out.append(self._removed(ref, False, n1))
            return out
        if ref is not None:  # in the reference, absent from the whole window: all missing
            return [
                self._rate("missing_rate", ref.missing, n0, n1, n1, "missing"),
                self._removed(ref, True, n1),
            ]
        if cur is not None:
            return [self._added(cur, n0)]
        return [self._added(FeatureCounts(n1, 0, 0, 0, None), n0)]  # gone again: resolves

    # -- the checks ------------------------------------------------------------------------

    def _rate(self, statistic: str, x0: int, n0: int, x1: int, n1: int, what: str) -> Finding:
        p0, p1 = x0 / max(n0, 1), x1 / max(n1, 1)
        value = p1 - p0 if self.enough else None
        floor = proportion_floor(x0, n0, x1, n1, self.s.z)
        text = f"share {what}"
        return self._finding(
            statistic,
            value,
            _thresholds(self.s, statistic, floor),
            firing=f"{text} rose ({p0:.1%} → {p1:.1%}, +{{delta}} ≥ {{threshold}})",
            resolved=f"{text} back to normal ({p0:.1%} → {p1:.1%})",
            description=(
                f"{x1} of {n1} window events had {self.name} {what} ({p1:.2%}) against {x0} of "
                f"{n0} in the reference ({p0:.2%}). The increase is held against the larger of "
                f"the configured threshold and z = {self.s.z:g} standard errors "
                f"({floor:.2%} at these counts)."
            ),
            evidence={
                "reference": {"count": x0, "events": n0, "share": round(p0, 6)},
                "current": {"count": x1, "events": n1, "share": round(p1, 6)},
                "z": None if floor in (0, INF) else round((p1 - p0) * self.s.z / floor, 3),
                "floor": None if floor == INF else round(floor, 6),
            },
            count=n1,
        )

    def _unseen(self, ref: CategoricalSketch, cur: CategoricalSketch) -> Finding:
        unseen = cur.unseen(ref)
        x1, n1, n0 = sum(unseen.values()), cur.count, ref.count
        singletons = sum(1 for n in ref.counts.values() if n == 1)
        expected = max(singletons, 0 if ref.is_exact else ref.other) / max(n0, 1)
        share = x1 / n1 if n1 else 0.0
        ok = self.enough and n1 >= 1 and n0 >= 1
        floor = expected + proportion_floor(expected * n0, n0, x1, n1, self.s.z)
        top = sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return self._finding(
            "unseen_share",
            share if ok else None,
            _thresholds(self.s, "unseen_share", floor),
            firing=f"never-seen categories are {share:.1%} of the window (≥ {{threshold}})",
            resolved=f"never-seen categories back to {share:.1%} of the window",
            description=(
                f"{x1} of {n1} window values of {self.name} are categories the reference "
                f"({n0} values) never saw; its own unseen-mass estimate (Good–Turing) is "
                f"{expected:.2%}."
            ),
            evidence={
                "unseen": [{"category": k, "count": v} for k, v in top],
                "unseen_categories": len(unseen),
                "expected_share": round(expected, 6),
                "reference_exact": ref.is_exact,
            },
            count=n1,
        )

    def _new_categories(self, ref: CategoricalSketch, cur: CategoricalSketch) -> Finding:
        n0, n1 = ref.count, cur.count
        s = self.s
        floor = self.lack / n0 if n0 else INF
        if not ref.is_exact:
            floor += ref.count_error / max(n0, 1)
        thresholds = _thresholds(s, "new_category", floor, floor_critical=False)
        warning = thresholds.warning
        ok = self.enough and n1 >= 1 and n0 >= 1 and math.isfinite(warning)
        unseen = cur.unseen(ref)
        announced: list[Announced] = []
        alpha, least = s.new_category_alpha, s.new_category_min_count
        if ok and self.tracked is not None:  # counted since first seen (detect.new_categories)
            announced = self.tracked.judge(
                self.segment,
                self.name,
                unseen,
                n1,
                floor=warning,
                alpha=alpha,
                window_alpha=s.new_category_window_alpha,
                least=least,
            )
        elif ok:  # one look at this window alone
            announced = judged({}, unseen, n1, warning, alpha, alpha, least)
        announced.sort(key=lambda a: (-a.share, a.category))
        # a category the test just reported breaches (its estimate may sit just under the
        # floor: the test decided); a reported one is held to the floor by its window share
        value = max(
            (a.share if a.basis == "reported" else max(a.share, warning) for a in announced),
            default=0.0,
        )
        shown = max((a.share for a in announced), default=0.0)
        new = [
            {
                "category": a.category,
                "share": round(a.share, 6),
                "count": a.count,
                "values": a.values,
                "basis": a.basis,
                "p_value": None if a.p_value is None else float(f"{a.p_value:.3g}"),
            }
            for a in announced[:10]
        ]
        listed = ", ".join(
            f"{c['category']!r} {c['share']:.1%} ({c['count']} of {c['values']} values"
            + (
                " since it first appeared)"
                if c["basis"] == "since first seen"
                else " in the window)"
            )
            for c in new
        )
        if len(announced) > len(new):
            listed += f" and {len(announced) - len(new)} more"
        finding = self._finding(
            "new_category",
            value if ok else None,
            thresholds,
            firing=f"new categories: {listed} (floor {{threshold}})",
            resolved="no new category above its threshold any more",
            description=(
                f"Categories of {self.name} the reference ({n0} values) never saw, reported when "
                f"their values since they first appeared (or, once no longer new, in one window) "
                f"reject a share of at most half the floor ({warning / 2:.2%}) in a one-sided "
                f"binomial test at alpha {s.new_category_alpha:g} (one window: "
                f"{s.new_category_window_alpha:g}) with at least {s.new_category_min_count} "
                f"values: {listed or 'none'}. The floor is the larger of the configured share "
                f"and what the reference could have missed ({floor:.2%} at its size)."
            ),
            evidence={
                "new_categories": new,
                "unseen_categories": len(unseen),
                "reference_exact": ref.is_exact,
                "floor": None if floor == INF else round(floor, 6),
                "null_share": round(warning / 2, 6) if math.isfinite(warning) else None,
            },
            count=n1,
        )
        finding.consecutive = 1  # the test already weighed the evidence of several buckets
        if ok and shown != value:
            finding.shown = shown
        return finding

    def _removed(self, ref: FeatureCounts, gone: bool, n1: int) -> Finding:
        n0 = ref.events
        p0 = ref.present / max(n0, 1)
        value = (p0 if gone else 0.0) if self.enough else None
        floor = self.lack / n1 if n1 else INF
        return self._finding(
            "feature_removed",
            value,
            _thresholds(self.s, "feature_removed", floor),
            firing=f"is no longer sent (it was in {p0:.1%} of reference events)",
            resolved="is sent again",
            description=(
                f"No event of the window carried {self.name}; {ref.present} of {n0} "
                f"reference events did ({p0:.2%}). A schema change upstream?"
            ),
            evidence={"reference": {"present": ref.present, "events": n0}},
            count=n1,
        )

    def _added(self, cur: FeatureCounts, n0: int) -> Finding:
        n1 = cur.events
        share = cur.present / max(n1, 1)
        floor = self.lack / n0 if n0 else INF
        return self._finding(
            "feature_added",
            share if self.enough else None,
            _thresholds(self.s, "feature_added", floor, floor_critical=False),
            firing=f"is new: {share:.1%} of window events carry it (≥ {{threshold}})",
            resolved="is no longer new or no longer sent",
            description=(
                f"{cur.present} of {n1} window events carried {self.name}, which the "
                "reference never had. A schema change upstream? Rebuild the baseline if the "
                "model uses it."
            ),
            evidence={"current": {"present": cur.present, "events": n1}},
            count=n1,
        )

    def _finding(
        self,
        statistic: str,
        value: float | None,
        thresholds: Thresholds,
        *,
        firing: str,
        resolved: str,
        description: str,
        evidence: dict[str, Any],
        count: int,
    ) -> Finding:
        subject = f"{self.name} of {self.who} in {self.where}"

        def headline(status: str, threshold: float) -> str:
            if status != "firing":
                return f"{subject}: {resolved}"
            delta = "n/a" if value is None else f"{value:.1%}"
            return f"{subject}: " + firing.replace("{delta}", delta).replace(
                "{threshold}", f"{threshold:.1%}"
            )

        return Finding(
            labels={**self.labels, "statistic": statistic},
            value=value,
            thresholds=thresholds,
            headline=headline,
            description=description,
            evidence={"statistic": statistic, **evidence},
            consecutive=self.consecutive,
            count=count,
        )
