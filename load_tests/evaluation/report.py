"""Targets, PASS / FAIL, and the tables (plain text for the terminal, markdown for the README).

The targets are those of issue 14 at default settings:

* recall 1.0 for every change at or above 1.5 x its minimum detectable size (``size/MDE``);
* precision >= 0.97 (per scenario that raised any alert, and pooled);
* at most 1 false alert per 10,000 (input, scope) evaluations, pooled over the stationary
  (and quiet) runs of a suite;
* abrupt changes (at or above 1.5 x MDE) detected within 1 window;
* at most 1 fire/resolve pair per condition per 24 evaluated windows on borderline scenarios;
* power: the smallest shift detected within 2 windows at most 1.5 x the MDE.
"""

from __future__ import annotations

from typing import Any

RECALL, PRECISION, FALSE_PER_10K, ABRUPT_WINDOWS, FLAPS_PER_24, POWER_RATIO = (
    1.0, 0.97, 1.0, 1.0, 1.0, 1.5,
)  # fmt: skip
MDE_FACTOR = 1.5


def _check(target: str, value: Any, ok: bool) -> dict[str, Any]:
    return {"target": target, "value": value, "pass": ok}


def row_targets(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The targets that apply to one scenario row, each with its value and PASS / FAIL."""
    out: dict[str, dict[str, Any]] = {}
    if row["kind"] != "change":
        return out
    ratio = row.get("size_over_mde")
    big = ratio is None or ratio >= MDE_FACTOR  # generated scenarios: all far above the limit
    if big and row.get("recall") is not None:
        out["recall"] = _check(f"= {RECALL:g}", row["recall"], row["recall"] >= RECALL)
    if row.get("precision") is not None:
        out["precision"] = _check(
            f">= {PRECISION:g}", row["precision"], row["precision"] >= PRECISION
        )
    if big and row.get("abrupt") and "delay_windows" in row:
        worst = row["delay_windows"]["max"]
        missed = row.get("recall") is not None and row["recall"] < 1.0
        out["delay"] = _check(
            f"<= {ABRUPT_WINDOWS:g} window",
            worst,
            worst is not None and worst <= ABRUPT_WINDOWS and not missed,
        )
    if row.get("borderline"):
        flaps = row["flaps_per_24_max"]
        out["flaps"] = _check(f"<= {FLAPS_PER_24:g} per 24", flaps, flaps <= FLAPS_PER_24)
    return out


def pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """False alerts over the quiet runs of one suite, and precision over its change runs."""
    quiet = [r for r in rows if r["kind"] != "change"]
    n = sum(r["evaluations"] for r in quiet)
    f = sum(r["false_alerts"] for r in quiet)
    rate = f / n * 1e4 if n else None
    changes = [r for r in rows if r["kind"] == "change"]
    true = sum(r["true_alerts"] for r in changes)
    fired = true + sum(r["false_alerts"] for r in changes)
    precision = round(true / fired, 3) if fired else None
    return {
        "quiet_evaluations": n,
        "quiet_false_alerts": f,
        "false_per_10k": None if rate is None else round(rate, 3),
        "false_per_10k_upper95": round(3.0 / n * 1e4, 3) if n and not f else None,
        "false_target": _check(f"<= {FALSE_PER_10K:g}", rate, rate is not None and rate <= 1),
        "precision": precision,
        "precision_target": _check(
            f">= {PRECISION:g}", precision, precision is None or precision >= PRECISION
        ),
    }


def power_targets(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        ratio = r["ratio"]
        r["target"] = _check(
            f"<= {POWER_RATIO:g} x MDE", ratio, ratio is not None and ratio <= POWER_RATIO
        )


def summary(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One line per target over the whole evaluation."""
    rows = result.get("real", []) + result.get("generated", [])
    out: dict[str, dict[str, Any]] = {}
    for name in ("recall", "precision", "delay", "flaps"):
        checks = [r["targets"][name] for r in rows if name in r.get("targets", {})]
        if checks:
            failed = sum(not c["pass"] for c in checks)
            out[name] = {
                "target": checks[0]["target"],
                "scenarios": len(checks),
                "failed": failed,
                "pass": failed == 0,
            }
    for suite in ("real", "generated"):
        pool = result.get(f"{suite}_pooled")
        if pool and pool["quiet_evaluations"]:
            out[f"false alerts ({suite})"] = {**pool["false_target"], "evaluations":
                                              pool["quiet_evaluations"]}  # fmt: skip
    if result.get("power"):
        failed = sum(not r["target"]["pass"] for r in result["power"])
        out["power"] = {"target": f"<= {POWER_RATIO:g} x MDE", "sizes": len(result["power"]),
                        "failed": failed, "pass": failed == 0}  # fmt: skip
    return out


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _spread(d: dict[str, Any] | None, fmt: str = "{:g}") -> str:
    if not d or d.get("median") is None:
        return "-"
    median, worst = fmt.format(d["median"]), fmt.format(d["max"])
    return median if median == worst else f"{median} / {worst}"


def _mark(row: dict[str, Any], name: str) -> str:
    check = row.get("targets", {}).get(name)
    return "" if check is None else (" ✓" if check["pass"] else " ✗")


COLUMNS = ("scenario", "size/MDE", "recall", "precision", "delay (windows)", "delay (events)",
           "false / 10k", "flaps / 24")  # fmt: skip


def cells(row: dict[str, Any]) -> list[str]:
    change = row["kind"] == "change"
    return [
        row["scenario"],
        _num(row.get("size_over_mde")),
        (_num(row.get("recall")) + _mark(row, "recall")) if change else "-",
        (_num(row.get("precision")) + _mark(row, "precision")) if change else "-",
        _spread(row.get("delay_windows")) + _mark(row, "delay"),
        _spread(row.get("delay_events"), "{:,.0f}"),
        f"{row['false_per_10k']:.2f} ({row['false_alerts']}/{row['evaluations']:,})"
        if not change
        else "-",
        (_num(row.get("flaps_per_24_max")) + _mark(row, "flaps")) if row.get("borderline") else "-",
    ]


def _groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["group"], []).append(r)
    return out


POWER_COLUMNS = ("window events", "reference rows", "smallest detected (all seeds / median)",
                 "MDE (power 0.8)", "ratio", "alpha per test (q, method, tests)")  # fmt: skip


def power_cells(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['window_events']:,}",
        f"{r['reference_rows']:,}",
        f"{_num(r['smallest_all_seeds'], '{:g}')} / {_num(r['smallest_median'], '{:g}')} sd",
        f"{r['mde_power_0.8']:.3f} sd",
        _num(r["ratio"]) + (" ✓" if r["target"]["pass"] else " ✗"),
        f"{r['alpha']:.2g} ({r['q']:g} {r['method']} {r['level_source']}, {r['family']})",
    ]


NEW_CATEGORY_COLUMNS = ("window events", "check's critical count (null share, alpha)",
                        "limit (power 0.8)", "1% / limit",
                        "P(1% within 1 window): check / any test",
                        "any test, all runs")  # fmt: skip


def new_category_cells(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['window_events']:,}",
        f"{r['critical_count']} ({r['null_share']:.2%}, {r['alpha']:g})",
        f"{r['limit_power_0.8']:.2%}",
        f"{r['ratio']:.2f}",
        f"{r['check_within_1_window']:.1%} / {r['best_within_1_window']:.1%}",
        f"{r['best_all_runs']:.1%} ({r['runs']} runs)",
    ]


NEW_CATEGORY_TITLE = "New category: the limit within one window (theory)"


def markdown(result: dict[str, Any]) -> str:
    """The README tables: one per group of scenarios, the power table, the targets."""
    lines: list[str] = []

    def table(head: tuple[str, ...], body: list[list[str]]) -> None:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines.extend("| " + " | ".join(c) + " |" for c in body)
        lines.append("")

    for group, rows in _groups(result.get("real", []) + result.get("generated", [])).items():
        lines.append(f"**{group}**")
        lines.append("")
        table(COLUMNS, [cells(r) for r in rows])
    if result.get("power"):
        lines.append("**Power: smallest location shift detected within 2 windows**")
        lines.append("")
        table(POWER_COLUMNS, [power_cells(r) for r in result["power"]])
    if result.get("new_category_limit"):
        lines.append(f"**{NEW_CATEGORY_TITLE}**")
        lines.append("")
        table(NEW_CATEGORY_COLUMNS, [new_category_cells(r) for r in result["new_category_limit"]])
    lines.append("**Targets**")
    lines.append("")
    table(
        ("target", "required", "result"),
        [[name, str(t["target"]), _verdict(t)] for name, t in result["summary"].items()],
    )
    return "\n".join(lines)


def _verdict(t: dict[str, Any]) -> str:
    word = "PASS" if t["pass"] else "FAIL"
    if "failed" in t:
        total = t.get("scenarios", t.get("sizes"))
        return f"{word} ({t['failed']} of {total} failed)"
    value = t.get("value")
    extra = "" if value is None else f" ({value:.2f} in {t.get('evaluations', 0):,})"
    return word + extra


def text(result: dict[str, Any]) -> str:
    """The same tables, aligned for a terminal."""
    out: list[str] = []

    def table(head: tuple[str, ...], body: list[list[str]]) -> None:
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
        out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
        out.append("  ".join("-" * w for w in widths))
        out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body)
        out.append("")

    for group, rows in _groups(result.get("real", []) + result.get("generated", [])).items():
        out.append(f"== {group}")
        table(COLUMNS, [cells(r) for r in rows])
    if result.get("power"):
        out.append("== power: smallest location shift detected within 2 windows")
        table(POWER_COLUMNS, [power_cells(r) for r in result["power"]])
    if result.get("new_category_limit"):
        out.append(f"== {NEW_CATEGORY_TITLE.lower()}")
        table(NEW_CATEGORY_COLUMNS, [new_category_cells(r) for r in result["new_category_limit"]])
    out.append("== targets")
    table(
        ("target", "required", "result"),
        [[name, str(t["target"]), _verdict(t)] for name, t in result["summary"].items()],
    )
    return "\n".join(out)
