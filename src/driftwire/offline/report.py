"""The drift report: one self-contained HTML page per model version and window.

:func:`render_report` takes what the detector evaluated for one window (an
:class:`~driftwire.detect.detector.Evaluation`: the window's profiles, the reference profile of
each segment and the decided comparisons), the alerts of that window and the detect settings,
and returns the page as a string. It draws nothing it did not get: the statistics, thresholds,
null quantiles and the rule's explanation are the detect core's own comparisons
(:func:`~driftwire.detect.compare.decide_family` already ran), the data-quality figures are
:func:`~driftwire.detect.quality.quality_findings` of the same profiles, and the plots
(:mod:`driftwire.offline.report_plots`) are read from the sketches. The page holds no script and
loads nothing: inline SVG and one ``<style>``; it opens from a file, a mail attachment or a
server (pure: no clock, no I/O; ``generated_ms`` is passed in).

Inputs come most drifted first (by their highest decision score), each with ``all`` then its
segments; every card shows both distributions, the bins that moved most, and each statistic
with its value, threshold, null quantile and the rule's sentence.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from driftwire.alerts.alert import Alert, iso
from driftwire.detect.compare import Comparison
from driftwire.detect.detector import Evaluation
from driftwire.detect.quality import quality_findings
from driftwire.detect.settings import DetectSettings
from driftwire.offline.report_plots import Plot, categorical_plot, numeric_plot
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch
from driftwire.sketch.profile import Profile

__all__ = ["render_report"]

Sketch = NumericSketch | CategoricalSketch
LATENCY_QUANTILES = (0.5, 0.9, 0.99)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#555}
table{border-collapse:collapse;margin:6px 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}th{background:#f6f6f6}td.n{text-align:right;
font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;
padding:8px;width:400px}.card.warning{border-color:#e0a800}.card.critical{border-color:#c0392b}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;background:#eee}
.badge.warning{background:#ffe08a}.badge.critical{background:#f5b7b1}.badge.firing{background:#f5b7b1}
.card table{font-size:11px;width:100%}.card td,.card th{padding:1px 3px}
.rule{font-size:12px;color:#444}.axis{font-size:10px;fill:#555}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return _e(value)


def _sketch(profile: Profile, name: str) -> Sketch | None:
    if name == "prediction.score":
        return profile.prediction_score
    if name == "prediction.label":
        return profile.prediction_label
    return profile.feature(name)


def _level(c: Comparison) -> str:
    value = c.value
    if value is None:
        return "insufficient"
    if value >= c.critical:
        return "critical"
    if value >= c.warning:
        return "warning"
    return "ok"


def _rank(c: Comparison) -> float:
    value = c.value
    return -1.0 if value is None or not math.isfinite(value) else value / max(c.warning, 1e-12)


def _rule_text(c: Comparison) -> str:
    if c.decision is not None:
        return str(c.decision.get("text", ""))
    r = c.result
    if r.value is None:
        return f"fixed: {r.statistic} insufficient data ({r.status})"
    floor = r.evidence.get("null_p99")
    noise = f"; null 99th percentile {_num(floor)}" if floor is not None else ""
    return (
        f"fixed: {r.statistic} {_num(r.value)} against warning {_num(c.warning)} / "
        f"critical {_num(c.critical)}{noise}"
    )


def _stat_rows(comparisons: list[Comparison]) -> str:
    rows = []
    for c in comparisons:
        d = c.decision or {}
        r = c.result
        null_q = d.get("null_quantile", r.evidence.get("null_p99"))
        threshold = f"{_num(c.warning)} / {_num(c.critical)}"
        rows.append(
            f"<tr><td>{_e(r.statistic)}</td><td class=n>{_num(r.value)}</td>"
            f"<td class=n>{_num(null_q)}</td><td class=n>{_num(d.get('p_value', r.p_value), 2)}"
            f"</td><td class=n>{_num(d.get('effect'))}</td><td class=n>{threshold}</td>"
            f"<td class=n>{_num(c.value)}</td><td class=n>{_num(d.get('psi'))}</td></tr>"
            f'<tr><td colspan=8 class="rule">{_e(_rule_text(c))}</td></tr>'
        )
    head = (
        "<tr><th>statistic</th><th>value</th><th>null q.</th><th>p</th><th>effect</th>"
        "<th>warn / crit</th><th>score</th><th>PSI</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _plot(ref: Sketch | None, cur: Sketch | None) -> Plot | None:
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        return numeric_plot(ref, cur)
    if isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
        return categorical_plot(ref, cur)
    return None


def _card(
    segment: str, comparisons: list[Comparison], ref: Sketch | None, cur: Sketch | None
) -> str:
    levels = [_level(c) for c in comparisons]
    level = next((x for x in ("critical", "warning") if x in levels), levels[0])
    plot = _plot(ref, cur)
    moved = ""
    if plot is not None and plot.moved:
        items = ", ".join(f"{_e(label)} {100 * d:+.1f} pts" for label, d in plot.moved)
        moved = f'<div class="rule">moved most: {items}</div>'
    counts = (
        f"{_num(ref.count if ref is not None else 0)} → {_num(cur.count if cur is not None else 0)}"
    )
    return (
        f'<div class="card {level}" data-segment="{_e(segment)}"><b>{_e(segment)}</b> '
        f'<span class="badge {level}">{level}</span> <span class="meta">values {counts}</span>'
        f"{plot.svg if plot is not None else ''}{moved}{_stat_rows(comparisons)}</div>"
    )


def _inputs(evaluation: Evaluation) -> str:
    by_input: dict[str, dict[str, list[Comparison]]] = {}
    for segment, c in zip(evaluation.segments, evaluation.results, strict=True):
        by_input.setdefault(c.feature, {}).setdefault(segment, []).append(c)
    order = sorted(
        by_input,
        key=lambda f: (-max(_rank(c) for cs in by_input[f].values() for c in cs), f),
    )
    sections = []
    for name in order:
        segments = by_input[name]
        cards = []
        for segment in sorted(
            segments, key=lambda s: (s != "all", -max(map(_rank, segments[s])), s)
        ):
            ref_profile = evaluation.reference_profiles.get(segment)
            current = evaluation.window.get(segment)
            ref = _sketch(ref_profile, name) if ref_profile is not None else None
            cur = _sketch(current, name) if current is not None else None
            cards.append(_card(segment, segments[segment], ref, cur))
        kind = "numeric" if isinstance(cur, NumericSketch) else "categorical"
        sections.append(
            f'<section class="input" data-input="{_e(name)}"><h3>{_e(name)} '
            f'<span class="meta">{kind}</span></h3><div class="cards">{"".join(cards)}</div>'
            "</section>"
        )
    return "".join(sections)


def _quality(evaluation: Evaluation, settings: DetectSettings) -> str:
    rows = []
    for segment, current in sorted(evaluation.window.items()):
        reference = evaluation.reference_profiles.get(segment)
        if reference is None or not settings.quality.enabled:
            continue
        labels = {
            "model": evaluation.model,
            "model_version": evaluation.model_version,
            "segment": segment,
        }
        for f in quality_findings(
            reference,
            current,
            settings.quality,
            labels,
            min_count=settings.min_count,
            min_reference_count=settings.min_reference_count,
        ):
            if f.value is None or (not f.value and f.level is None):
                continue
            level = f.level or "ok"
            rows.append(
                (
                    0 if f.level else 1,
                    f"<tr><td>{_e(segment)}</td><td>{_e(f.labels.get('feature', ''))}</td>"
                    f"<td>{_e(f.labels.get('statistic', ''))}</td><td class=n>{_num(f.value)}"
                    f"</td><td class=n>{_num(f.thresholds.warning)} / "
                    f"{_num(f.thresholds.critical)}</td>"
                    f'<td><span class="badge {level}">{level}</span></td></tr>',
                )
            )
    rows.sort(key=lambda r: r[0])
    if not rows:
        return (
            "<p>Every data-quality figure is 0 (no missing, wrong-type, non-finite or "
            "unseen values beyond the reference's).</p>"
        )
    head = (
        "<tr><th>segment</th><th>input</th><th>figure</th><th>value</th>"
        "<th>warn / crit</th><th>level</th></tr>"
    )
    shown = rows[:300]
    more = f"<p>… and {len(rows) - 300} more at 0 level.</p>" if len(rows) > 300 else ""
    return f"<table>{head}{''.join(r for _, r in shown)}</table>{more}"


def _latency(evaluation: Evaluation) -> str:
    rows = []
    for segment, current in sorted(evaluation.window.items(), key=lambda i: (i[0] != "all", i[0])):
        reference = evaluation.reference_profiles.get(segment)
        cells = []
        for profile in (reference, current):
            sketch = profile.latency_ms if profile is not None else None
            if sketch is None or not sketch.count:
                cells.append("<td class=n>–</td>" * len(LATENCY_QUANTILES))
                continue
            values = sketch.quantiles(list(LATENCY_QUANTILES))
            cells.append("".join(f"<td class=n>{float(v):.1f}</td>" for v in values))
        rows.append(f"<tr><td>{_e(segment)}</td>{''.join(cells)}</tr>")
    names = "".join(f"<th>p{round(q * 100)}</th>" for q in LATENCY_QUANTILES)
    head = (
        f"<tr><th></th><th colspan=3>reference (ms)</th><th colspan=3>window (ms)</th></tr>"
        f"<tr><th>segment</th>{names}{names}</tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _alerts(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return "<p>No alert fired or resolved in this window.</p>"
    rows = "".join(
        f'<tr><td><span class="badge {_e(a.status)}">{_e(a.status)}</span></td>'
        f"<td>{_e(a.labels.get('severity', ''))}</td><td>{_e(a.kind)}</td>"
        f"<td>{_e(a.labels.get('segment', ''))}</td><td>{_e(a.labels.get('feature', ''))}</td>"
        f"<td>{_e(a.summary)}</td><td>{_e(iso(a.starts_at_ms))}</td></tr>"
        for a in alerts
    )
    head = (
        "<tr><th>status</th><th>severity</th><th>kind</th><th>segment</th><th>input</th>"
        "<th>summary</th><th>since</th></tr>"
    )
    return f"<table>{head}{rows}</table>"


def render_report(
    evaluation: Evaluation,
    alerts: Sequence[Alert],
    settings: DetectSettings,
    *,
    generated_ms: int,
    source: str = "",
) -> str:
    """The HTML page of one model version's window (see the module docstring)."""
    ref = evaluation.reference
    window_events = evaluation.window["all"].n_events if "all" in evaluation.window else 0
    described = (
        f"{_e(ref.kind)} {_e(ref.id)} ({_num(ref.count)} events)" if ref is not None else "none"
    )
    title = f"driftwire report: {evaluation.model} {evaluation.model_version}"
    drifted = sum(1 for c in evaluation.results if _level(c) in ("warning", "critical"))
    rule = settings.rule
    if rule == "calibrated":
        rule_line = (
            f"calibrated: significance at the actual sizes with {settings.fdr} FDR at "
            f"q={settings.fdr_q:g}, and a minimum effect "
            f"({', '.join(f'{k} {v:g}' for k, v in settings.min_effect.items())})"
        )
    else:
        rule_line = "fixed thresholds, never below 1.5x the statistic's null 99th percentile"
    return (
        '<!DOCTYPE html><html lang=en><head><meta charset=utf-8><link rel=icon href="data:,">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<div class="meta">window {_e(iso(evaluation.start_ms))} – '
        f"{_e(iso(evaluation.bucket_end_ms))}, {_num(window_events)} events; reference "
        f"{described}; rule {_e(rule_line)}; "
        f"{drifted} of {len(evaluation.results)} tests at warning or above"
        f"{'; source ' + _e(source) if source else ''}; generated {_e(iso(generated_ms))}</div>"
        '<div class="legend"><span style="background:#4a6fa5"></span>reference'
        '<span style="background:#e07b39"></span>window'
        '<span style="background:#fff1a8"></span>moved most</div>'
        f"<h2>Alerts of this window</h2>{_alerts(alerts)}"
        f"<h2>Latency</h2>{_latency(evaluation)}"
        f"<h2>Data quality</h2>{_quality(evaluation, settings)}"
        f"<h2>Inputs</h2>{_inputs(evaluation)}"
        "</body></html>"
    )
