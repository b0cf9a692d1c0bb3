"""A strong discovery does not lower the bar for the other tests of its window, and a breach
that is not decisive must outlast the buckets of its first window before it fires.

Seeded constructions: 12 numeric inputs of 1,000 window events against 20,000 reference
events, the others stationary; one input's shift is chosen on a grid so that its KS p-value
lands in the interval the test is about (the bounds are computed, not pinned).
"""

from __future__ import annotations

import numpy as np

from driftwire.alerts.policy import AlertPolicy, Thresholds
from driftwire.detect.compare import Comparison, compare_sketches, decide_family
from driftwire.detect.settings import DetectSettings
from driftwire.sketch.numeric import NumericSketch

INPUTS = 12


def numeric(values: np.ndarray) -> NumericSketch:
    s = NumericSketch()
    s.update_batch(values)
    return s


def undecided(name: str, ref: NumericSketch, values: np.ndarray, d: DetectSettings) -> Comparison:
    (c,) = compare_sketches(name, ref, numeric(values), d)
    return c


def family_with(
    d: DetectSettings, strong: bool, low: float, high: float
) -> tuple[list[tuple[str, Comparison]], float]:
    """Inputs x0 (shifted 0.5 sd when ``strong``), x1 (a shift whose p-value is in
    ``(low, high]``) and x2..x11 stationary; returns the family and x1's p-value."""
    rng = np.random.default_rng(7)
    refs = [numeric(rng.normal(size=20_000)) for _ in range(INPUTS)]
    base = [rng.normal(size=1_000) for _ in range(INPUTS)]
    rest = [undecided(f"x{i}", refs[i], base[i], d) for i in range(2, INPUTS)]
    first = undecided("x0", refs[0], base[0] + (0.5 if strong else 0.0), d)
    for shift in np.linspace(0.0, 0.4, 401):
        second = undecided("x1", refs[1], base[1] + shift, d)
        p = second.test.p_value if second.test is not None else None
        if p is not None and low < p <= high:
            family = [("all", c) for c in (first, second, *rest)]
            others = [c.test.p_value for c in rest if c.test is not None]
            assert min(p for p in others if p is not None) > high  # the rest stay null
            return family, p
    raise AssertionError(f"no shift puts the p-value in ({low}, {high}]")


def decided(family: list[tuple[str, Comparison]], d: DetectSettings) -> dict[str, Comparison]:
    return {c.feature: c for _, c in decide_family(family, d)}


def fires(c: Comparison) -> bool:
    return c.value is not None and c.value >= 1.0


def test_a_strong_discovery_does_not_loosen_the_cut_off_for_another_input() -> None:
    d = DetectSettings()
    q, m = d.fdr_q, INPUTS
    # above what Holm gives the second discovery (q / (m - 1)), within BH's (2 q / m)
    family, p = family_with(d, strong=True, low=q / (m - 1), high=2 * q / m)
    bh = decided(family, DetectSettings(fdr="bh"))
    assert fires(bh["x0"]) and fires(bh["x1"]), bh["x1"].decision  # the earlier rule
    default = decided(family, d)
    assert fires(default["x0"])
    assert not fires(default["x1"]), default["x1"].decision
    assert default["x1"].decision is not None
    assert default["x1"].decision["fdr"] == "holm"
    # one discovery: the line it passed, q / m; x1 is beyond even the next, q / (m - 1)
    assert default["x1"].decision["cutoff"] == q / m
    assert q / (m - 1) < p
    assert default["x1"].decision["relevant"]  # relevant, just not significant


def test_a_breach_near_its_cut_off_needs_the_window_length_and_a_decisive_one_k() -> None:
    d = DetectSettings()
    q, m, w, k = d.fdr_q, INPUTS, d.window_buckets, d.consecutive_windows
    # x1 alone significant but not decisive: p in (q / (m w), q / m]
    family, _ = family_with(d, strong=False, low=q / (m * w), high=q / m)
    near = decided(family, d)["x1"]
    assert near.decision is not None and fires(near)
    assert not near.decision["decisive"]
    assert near.decision["windows_to_fire"] == w
    assert near.decision["decisive_cutoff"] == near.decision["cutoff"] / w
    strong = decided(family_with(d, strong=True, low=q / (m - 1), high=2 * q / m)[0], d)["x0"]
    assert strong.decision is not None and strong.decision["decisive"]
    assert strong.decision["windows_to_fire"] == k


def test_the_policy_fires_a_non_decisive_breach_after_confirm_windows() -> None:
    t = Thresholds(warning=1.0, critical=10.0)
    p = AlertPolicy(consecutive=2)
    # breaching but not decisive (confirm 5): fires at the 5th breaching window, not the 2nd
    fired = [bool(p.observe("near", 2.0, t, now_ms=i, confirm=5)) for i in range(6)]
    assert fired == [False, False, False, False, True, False]
    # two non-decisive breaches, then a decisive one: K = 2 is met, it fires at once
    p = AlertPolicy(consecutive=2)
    assert not p.observe("x", 2.0, t, now_ms=0, confirm=5)
    assert not p.observe("x", 2.0, t, now_ms=1, confirm=5)
    assert p.observe("x", 2.0, t, now_ms=2)[0].status == "firing"
    # an interrupted streak starts again
    p = AlertPolicy(consecutive=2)
    for i, v in enumerate([2.0, 2.0, 2.0, 0.5, 2.0, 2.0]):
        assert not p.observe("y", v, t, now_ms=i, confirm=5)
