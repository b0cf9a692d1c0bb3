"""Inline SVG plots of a reference and a current sketch, drawn from the sketches alone.

Numeric inputs: a histogram over equal-width bins spanning both sides' 1st-99th percentiles
(the tails folded into the end bins), the shares read from each sketch's CDF; categorical
inputs: the share of each of the largest categories (and the rest) on both sides. The
:data:`HIGHLIGHTED` bins whose share moved most get a band behind them and a ``<title>`` that
says by how much. Each series is one ``<path>``, so a plot is a kilobyte or two of text.

>>> from driftwire.sketch.numeric import NumericSketch
>>> import numpy as np
>>> ref, cur = NumericSketch(), NumericSketch()
>>> ref.update_batch(np.random.default_rng(1).normal(0, 1, 5000))
>>> cur.update_batch(np.random.default_rng(2).normal(1, 1, 5000))
>>> plot = numeric_plot(ref, cur)
>>> plot.moved[0][1] > 0.02, plot.svg.startswith("<svg"), len(plot.svg) < 3000
(True, True, True)
"""

from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass

import numpy as np

from driftwire.sketch.numeric import CategoricalSketch, NumericSketch

__all__ = ["HIGHLIGHTED", "Plot", "categorical_plot", "numeric_plot"]

#: Bins (or categories) highlighted per plot: those whose share moved most.
HIGHLIGHTED = 3
BINS = 24
CATEGORIES = 10
WIDTH, HEIGHT, PAD = 320, 120, 4
REFERENCE_COLOUR, CURRENT_COLOUR, BAND_COLOUR = "#4a6fa5", "#e07b39", "#fff1a8"


@dataclass(frozen=True)
class Plot:
    """One plot: its SVG text, and the bins that moved most as (label, share change)."""

    svg: str
    moved: list[tuple[str, float]]


def _number(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e5 else f"{x:.2e}"


def _shares_numeric(sketch: NumericSketch, edges: np.ndarray) -> np.ndarray:
    if sketch.count == 0:
        return np.zeros(len(edges) - 1)
    cdf = np.asarray(sketch.cdf(edges[1:-1]), dtype=np.float64)
    cumulative = np.concatenate(([0.0], cdf, [1.0]))
    return np.clip(np.diff(cumulative), 0.0, 1.0)


def _top_moved(delta: np.ndarray) -> list[int]:
    order = np.argsort(-np.abs(delta), kind="stable")
    return [int(i) for i in order[:HIGHLIGHTED] if abs(delta[i]) >= 0.005]


def numeric_plot(reference: NumericSketch, current: NumericSketch) -> Plot:
    """Histograms of both sides over shared bins."""
    sides = [s for s in (reference, current) if s.count]
    if not sides:
        return Plot(_empty("no values"), [])
    lo = min(float(s.quantiles([0.01])[0]) for s in sides)
    hi = max(float(s.quantiles([0.99])[0]) for s in sides)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, BINS + 1)
    edges[0], edges[-1] = -np.inf, np.inf  # the tails count in the end bins
    ref, cur = _shares_numeric(reference, edges), _shares_numeric(current, edges)
    inner = np.linspace(lo, hi, BINS + 1)
    labels = [f"{_number(a)} to {_number(b)}" for a, b in itertools.pairwise(inner)]
    return _bars(labels, ref, cur, axis=(_number(lo), _number(hi)))


def categorical_plot(reference: CategoricalSketch, current: CategoricalSketch) -> Plot:
    """Shares of the largest categories of either side, and the rest as one bar."""
    n_ref, n_cur = max(reference.count, 1), max(current.count, 1)
    ref_counts, cur_counts = reference.counts, current.counts
    names = sorted(
        set(ref_counts) | set(cur_counts),
        key=lambda c: (-max(ref_counts.get(c, 0) / n_ref, cur_counts.get(c, 0) / n_cur), c),
    )
    shown = names[:CATEGORIES]
    ref = np.array([ref_counts.get(c, 0) / n_ref for c in shown])
    cur = np.array([cur_counts.get(c, 0) / n_cur for c in shown])
    if len(names) > CATEGORIES or reference.other or current.other:
        shown = [*shown, "(other)"]
        ref = np.append(ref, max(1.0 - ref.sum(), 0.0) if reference.count else 0.0)
        cur = np.append(cur, max(1.0 - cur.sum(), 0.0) if current.count else 0.0)
    if not shown:
        return Plot(_empty("no values"), [])
    return _bars(shown, ref, cur, axis=None)


def _empty(text: str) -> str:
    return (
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img"><rect width="{WIDTH}" height="{HEIGHT}" fill="#f4f4f4"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">{html.escape(text)}</text>'
        "</svg>"
    )


def _bars(
    labels: list[str], ref: np.ndarray, cur: np.ndarray, *, axis: tuple[str, str] | None
) -> Plot:
    """Paired bars: vertical over numeric bins (``axis`` = its ends), horizontal by category."""
    delta = cur - ref
    moved = _top_moved(delta)
    top = max(float(ref.max(initial=0.0)), float(cur.max(initial=0.0)), 1e-9)
    n = len(labels)
    parts: list[str] = []
    if axis is not None:
        height, base, left = HEIGHT, HEIGHT - 16, PAD
        slot = (WIDTH - 2 * PAD) / n
        bar = slot * 0.42

        def geometry(i: int, side: int, share: float) -> tuple[float, float, float, float]:
            h = (base - PAD - 10) * share / top
            return left + i * slot + side * bar + slot * 0.08, base - h, bar, h

        band = [(left + i * slot, PAD, slot, base - PAD) for i in moved]
        parts.append(
            f'<text x="{PAD}" y="{HEIGHT - 3}" class="axis">{html.escape(axis[0])}</text>'
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 3}" class="axis" text-anchor="end">'
            f"{html.escape(axis[1])}</text>"
            f'<line x1="{PAD}" y1="{base}" x2="{WIDTH - PAD}" y2="{base}" stroke="#999"/>'
        )
    else:
        row = 13
        height, left = n * row + 2 * PAD, 110
        span = WIDTH - left - 44

        def geometry(i: int, side: int, share: float) -> tuple[float, float, float, float]:
            return left, PAD + i * row + side * 5.5 + 1, span * share / top, 5

        band = [(0, PAD + i * row, WIDTH, row) for i in moved]
        for i, label in enumerate(labels):
            short = label if len(label) <= 18 else label[:17] + "…"
            parts.append(
                f'<text x="{left - 4}" y="{PAD + i * row + 10}" class="axis" '
                f'text-anchor="end">{html.escape(short)}</text>'
                f'<text x="{WIDTH - 2}" y="{PAD + i * row + 10}" class="axis" '
                f'text-anchor="end">{100 * cur[i]:.0f}%</text>'
            )
    bands = "".join(
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{BAND_COLOUR}">'
        f"<title>{html.escape(labels[i])}: {100 * ref[i]:.1f}% → {100 * cur[i]:.1f}% "
        f"({100 * delta[i]:+.1f} points)</title></rect>"
        for i, (x, y, w, h) in zip(moved, band, strict=True)
    )
    paths = []
    for side, (shares, colour) in enumerate(((ref, REFERENCE_COLOUR), (cur, CURRENT_COLOUR))):
        d = "".join(
            f"M{x:.1f} {y:.1f}h{w:.1f}v{h:.1f}h{-w:.1f}z"
            for x, y, w, h in (geometry(i, side, float(s)) for i, s in enumerate(shares))
            if w > 0 and h > 0
        )
        name = "reference" if side == 0 else "current"
        paths.append(f'<path class="{name}" d="{d}" fill="{colour}"/>')
    svg = (
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img">{bands}{"".join(paths)}{"".join(parts)}</svg>'
    )
    return Plot(svg, [(labels[i], float(delta[i])) for i in moved])
