"""The real-data scenarios: which table, which sizes, which injected changes, and their limits.

Every stream is made of 1-hour buckets; the window is the detector's default number of
buckets (``detect.window_buckets``), so ``window_events`` events fall in one window. A change
starts after ``PRE`` windows and the stream goes on for ``POST`` windows after it (longer for
staggered changes and for the borderline scenarios, which run 24 windows past the change to
count flaps); a stationary version of each group runs ``STATIONARY`` windows with no change.

The limit of a change (:func:`limit`) is the theoretical minimum detectable size
(:mod:`evaluation.theory`) at the sizes of the scope the change touched (all traffic, or the
changed segments' share of the window and of the reference) and the α that the configured
false-discovery control leaves one test in this model's family; for a never-seen category, the
share the new-category check's own test (its level, its floor) reports within one window with
the same power (:func:`evaluation.theory.mde_new_category`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from evaluation import theory
from evaluation.streams import Change, Design
from evaluation.tables import Table, load

PRE, POST, STATIONARY, BORDERLINE = 2, 4, 24, 24  # in windows


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    design: Design
    abrupt: bool = True
    borderline: bool = False

    @property
    def stationary(self) -> bool:
        return not self.design.changes

    @property
    def quiet(self) -> bool:
        """Nothing a detector should report (stationary, or changes below relevance)."""
        return not any(c.expected for c in self.design.changes)


@dataclass(frozen=True)
class Group:
    name: str
    table: str
    window_events: int
    reference_rows: int


CANCER = Group("cancer: classifier, unsegmented, 1,000 / 20,000", "cancer", 1000, 20_000)
SMALL = Group("cancer small: 300 / 2,000", "cancer", 300, 2_000)
RAND = Group("rand: regression, 4 plan segments, 2,500 / 60,000", "rand", 2500, 60_000)
FAIR = Group("fair: classifier, 4 occupation segments, 3,000 / 20,000", "fair", 3000, 20_000)
TINY = Group("diabetes: tiny baseline, 250 / 500", "diabetes", 250, 500)
EDGE = Group("borderline: cancer, 375 / 20,000, 24 windows", "cancer", 375, 20_000)

FIVE = ("mean_texture", "mean_radius", "mean_smoothness", "worst_symmetry",
        "fractal_dimension_error")  # fmt: skip
RAND_NUM = ("lpi", "fmde", "physlm", "disea")


@dataclass(frozen=True)
class Lengths:
    """Stream lengths in windows: before a change, after it, stationary, borderline."""

    pre: int = PRE
    post: int = POST
    stationary: int = STATIONARY
    borderline: int = BORDERLINE


QUICK_LENGTHS = Lengths(pre=1, post=2, stationary=6, borderline=6)
QUICK = {  # the --quick subset: (group, scenario)
    (CANCER.name, "stationary"),
    (CANCER.name, "mean_texture +0.3 sd"),
    (CANCER.name, "new category at 1%"),
    (RAND.name, "stationary"),
    (RAND.name, "4 inputs +0.3 sd, one per window"),
    (RAND.name, "composition: fmde +0.3 sd in free, -0.3 sd in the others"),
    (TINY.name, "bmi +1 sd"),
}


def scenarios(w: int, *, quick: bool = False) -> list[Scenario]:
    """The catalogue for windows of ``w`` buckets (``quick``: a subset, shorter streams)."""
    lengths = QUICK_LENGTHS if quick else Lengths()

    def make(group: Group, name: str, *changes: Change, **kw: Any) -> Scenario:
        # change starts and ramps are given in windows after the stationary start
        starts = lengths.pre * w
        moved = tuple(replace(c, start=starts + c.start * w, ramp=c.ramp * w) for c in changes)
        last = max((c.start for c in changes), default=0)
        post = lengths.borderline if kw.get("borderline") else lengths.post
        windows = lengths.stationary if not changes else lengths.pre + last + post
        design = Design(group.table, group.window_events, group.reference_rows, windows * w, moved)
        return Scenario(name, group.name, design, **kw)

    def loc(f: str, d: float, at: int = 0, **kw: Any) -> Change:
        return Change(f, at, "location", d, **kw)

    out = [
        make(CANCER, "stationary"),
        *(make(CANCER, f"mean_texture +{d} sd", loc("mean_texture", d)) for d in (0.1, 0.2, 0.3)),
        *(make(CANCER, f"worst_area scale x{1 + d:g}", Change("worst_area", 0, "scale", d))
          for d in (0.1, 0.2, 0.3)),
        make(CANCER, "area_error (heavy tail) +0.2 sd", loc("area_error", 0.2)),
        make(CANCER, "texture_band top share 0.55 -> 0.80",
             Change("texture_band", 0, "share", 0.80)),
        make(CANCER, "new category at 1%", Change("texture_band", 0, "new_category", 0.01)),
        make(CANCER, "new category at 0.2% (quiet)",
             Change("texture_band", 0, "new_category", 0.002, expected=False)),
        make(CANCER, "gradual: mean_concavity 0 -> 0.3 sd over 2 windows",
             Change("mean_concavity", 0, "location", 0.3, ramp=2), abrupt=False),
        make(CANCER, "5 inputs +0.2 sd at once", *(loc(f, 0.2) for f in FIVE)),
        make(CANCER, "4 inputs +0.3 sd, one per window",
             *(loc(f, 0.3, at=i) for i, f in enumerate(FIVE[:4]))),
        make(SMALL, "stationary"),
        make(SMALL, "mean_texture +0.3 sd", loc("mean_texture", 0.3)),
        make(SMALL, "mean_texture +0.5 sd", loc("mean_texture", 0.5)),
        make(RAND, "stationary"),
        make(RAND, "lpi +0.1 sd", loc("lpi", 0.1)),
        make(RAND, "health top share 0.55 -> 0.80 in every plan",
             Change("health", 0, "share", 0.80)),
        make(RAND, "composition: fmde +0.3 sd in free, -0.3 sd in the others",
             loc("fmde", 0.3, segments=("free",), inside_only=True),
             loc("fmde", -0.3, segments=("c25", "c50", "c95"), inside_only=True)),
        make(RAND, "disea +0.3 sd in plan c95 only", loc("disea", 0.3, segments=("c95",))),
        make(RAND, "4 inputs +0.2 sd at once", *(loc(f, 0.2) for f in RAND_NUM)),
        make(RAND, "4 inputs +0.3 sd, one per window",
             *(loc(f, 0.3, at=i) for i, f in enumerate(RAND_NUM))),
        make(FAIR, "stationary"),
        make(FAIR, "yrs_married +0.2 sd in manual only",
             loc("yrs_married", 0.2, segments=("manual",))),
        make(FAIR, "age scale x1.3", Change("age", 0, "scale", 0.3)),
        make(FAIR, "marriage_band top share 0.56 -> 0.80 in every segment",
             Change("marriage_band", 0, "share", 0.80)),
        make(FAIR, "new category at 1%", Change("religious", 0, "new_category", 0.01)),
        make(TINY, "stationary"),
        make(TINY, "bmi +0.5 sd", loc("bmi", 0.5)),
        make(TINY, "bmi +1 sd", loc("bmi", 1.0)),
        make(EDGE, "mean_texture +0.2 sd", loc("mean_texture", 0.2), borderline=True),
        make(EDGE, "mean_texture +0.3 sd", loc("mean_texture", 0.3), borderline=True),
    ]  # fmt: skip
    return [s for s in out if (s.group, s.name) in QUICK] if quick else out


def scopes(table: Table) -> int:
    """Scopes compared per input: each segment and the aggregate, or the one scope."""
    return len(table.segments()) + 1 if table.segment else 1


def family(table: Table, detect: Any) -> int:
    numeric = len(table.numeric) + 1  # the prediction score
    categorical = len(table.categorical) + (1 if table.labels else 0)
    return theory.family_size(detect, numeric, categorical, scopes(table))


def evaluations(scenario: Scenario) -> int:
    """(input, scope) evaluations the design calls for: every bucket closes one window."""
    table = load(scenario.design.table)
    return scenario.design.buckets * table.inputs * scopes(table)


def limit(change: Change, design: Design, detect: Any) -> tuple[float, float]:
    """(the minimum detectable size, the change's size / it) for ``change`` in ``design``."""
    table = load(design.table)
    alpha = theory.level(detect).alpha(family(table, detect))
    rows = None
    weight = 1.0
    if change.segments is not None and table.segment is not None:
        mask = [str(v) in change.segments for v in table.columns[table.segment]]
        weight = sum(mask) / table.rows
        rows = [i for i, hit in enumerate(mask) if hit]
    n, m = design.window_events * weight, design.reference_rows * weight
    if change.kind == "location":
        mde = theory.mde_location(n, m, alpha=alpha)
        return mde, abs(change.size) / mde
    if change.kind == "scale":
        mde = theory.mde_scale(n, m, alpha=alpha)
        return mde, math.log1p(change.size) / mde
    if change.kind == "share":
        import numpy as np

        shares = table.shares(change.feature, None if rows is None else np.asarray(rows))
        p = max(shares.values())
        mde = theory.mde_share(p, n, m, alpha=alpha)
        return mde, (change.size - p) / mde
    test = new_category_test(detect)
    mde = theory.mde_new_category(n, floor=test["floor"], alpha=test["alpha"])
    return mde, change.size / mde


def new_category_test(detect: Any) -> dict[str, Any]:
    """The new-category check's floor, level and minimum count, from ``detect.quality``
    (the defaults where a setting is absent)."""
    quality = getattr(detect, "quality", None)
    configured = (getattr(quality, "thresholds", None) or {}).get("new_category")
    return {
        "floor": float(configured[0]) if configured else theory.NEW_CATEGORY_FLOOR,
        "alpha": float(getattr(quality, "new_category_alpha", theory.NEW_CATEGORY_ALPHA)),
        "least": int(getattr(quality, "new_category_min_count", theory.NEW_CATEGORY_LEAST)),
    }
