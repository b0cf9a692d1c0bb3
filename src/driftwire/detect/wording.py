"""Plain words in alert texts: what the ``all`` aggregate means, and when a bound is worth showing.

Beside real segments, segment ``all`` is the aggregate over them. When it breaches, the
reader needs to know whether everything moved or one segment pulled the aggregate along: so
its texts say "in the aggregate over segments, driven by region=eu", naming the segments
whose same condition (kind, feature, statistic) breaches in the same window, and the evidence
lists them (``driving_segments``). An unsegmented model's one segment is all traffic and is
worded so.

A sketch's error bound is shown in a text only where it informs the decision: when it is
smaller than the value and the threshold lies within it (the decision could go either way
within the sketch's error). A bound wider than the value ("0.572 (error bound ±0.93)") is a
loose worst case, noise to a reader; it stays in the alert's ``bound`` field.

>>> bound_note(0.572, 0.93, 0.1), bound_note(0.41, 0.01, 0.25), bound_note(0.26, 0.02, 0.25)
('', '', ' (error bound ±0.02)')
"""

from __future__ import annotations

from dataclasses import replace

from driftwire.alerts.finding import Finding, Headline

ALL = "all"
ALL_TRAFFIC = "all traffic"
AGGREGATE = "the aggregate over segments"
MAX_NAMED = 3  # driving segments named in a summary; the evidence lists all


def bound_note(value: float | None, bound: float | None, threshold: float) -> str:
    """`` (error bound ±b)`` where the bound could change the decision, else ``""``."""
    if value is None or bound is None or not bound > 0 or bound >= abs(value):
        return ""
    if abs(value - threshold) > bound:
        return ""
    return f" (error bound ±{bound:.2g})"


def _key(f: Finding) -> tuple[str, str, str]:
    return f.kind, f.labels.get("feature", ""), f.labels["statistic"]


def attributed(findings: list[Finding]) -> list[Finding]:
    """``findings`` of one window of a segmented model, the ``all`` ones worded as the
    aggregate and naming the segments whose same condition breaches too."""
    breaching: dict[tuple[str, str, str], list[str]] = {}
    for f in findings:
        if f.labels.get("segment", ALL) != ALL and f.level is not None:
            breaching.setdefault(_key(f), []).append(f.labels["segment"])
    out: list[Finding] = []
    for f in findings:
        if f.labels.get("segment") != ALL or ALL_TRAFFIC not in f.headline("firing", 0.0):
            out.append(f)
            continue
        drivers = sorted(breaching.get(_key(f), []))
        out.append(
            replace(
                f,
                headline=_aggregate(f.headline, drivers),
                evidence={**f.evidence, "driving_segments": drivers},
            )
        )
    return out


def _aggregate(headline: Headline, drivers: list[str]) -> Headline:
    named = ", ".join(drivers[:MAX_NAMED])
    if len(drivers) > MAX_NAMED:
        named += f" and {len(drivers) - MAX_NAMED} more"
    firing = (
        f"{AGGREGATE}, driven by {named}"
        if drivers
        else f"{AGGREGATE} (no single segment breaches on its own)"
    )

    def worded(status: str, threshold: float) -> str:
        where = firing if status == "firing" else AGGREGATE
        return headline(status, threshold).replace(ALL_TRAFFIC, where, 1)

    return worded
