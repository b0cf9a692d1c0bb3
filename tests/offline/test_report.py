"""The HTML drift report: what the page says (pure), and how it looks in a real browser.

The browser is Debian's ``chromium`` (``make browser`` installs it; ``DRIFTWIRE_CHROMIUM``
names another binary), driven by Playwright without its own browser download. Without a
browser the test fails, saying how to get one.
"""

from __future__ import annotations

import html
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from driftwire.alerts.alert import Alert
from driftwire.detect.detector import Evaluation
from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.offline.report import render_report
from driftwire.offline.report_plots import numeric_plot
from driftwire.ops.config import Settings
from driftwire.sketch.numeric import NumericSketch
from driftwire.stages.inmemory import InMemoryPipeline

MINUTE = 60_000
REFERENCE_RGB, CURRENT_RGB = (0x4A, 0x6F, 0xA5), (0xE0, 0x7B, 0x39)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A baseline from logged events, today's events with ``age`` shifted 3 sd, and the
    evaluation of the last window with its alerts (12 inputs x 8 segments)."""
    root = tmp_path_factory.mktemp("report")
    (root / "logged.jsonl").write_bytes(
        b"\n".join(generate(StreamSpec(events=40_000, seed=3))) + b"\n"
    )
    out = run_cli("baseline", "build", str(root / "logged.jsonl"), "-o", str(root / "b.dwb"))
    assert out.returncode == 0, out.stderr
    start = StreamSpec(events=1).start_ms
    today = StreamSpec(
        events=24_000,
        seed=9,
        events_per_second=24_000 / 1800,
        changes=(Change("age", start + 10 * MINUTE, 3.0),),
    )
    values = list(generate(today))
    (root / "today.jsonl").write_bytes(b"\n".join(values) + b"\n")
    store = ReferenceStore()
    store.put(Reference.from_bytes((root / "b.dwb").read_bytes()))
    evaluations: list[Evaluation] = []
    settings = Settings()
    pipeline = InMemoryPipeline(settings, store, on_evaluation=evaluations.append)
    alerts = list(pipeline.run(values))
    return {"root": root, "settings": settings, "evaluation": evaluations[-1], "alerts": alerts}


def _page(drifted: dict[str, Any]) -> tuple[str, Evaluation, list[Alert]]:
    evaluation: Evaluation = drifted["evaluation"]
    end = drifted["alerts"][-1].window["end"]
    alerts = [a for a in drifted["alerts"] if a.window["end"] == end]
    page = render_report(
        evaluation, alerts, drifted["settings"].detect, generated_ms=1_767_225_600_000
    )
    return page, evaluation, alerts


def test_the_page_shows_the_detect_cores_own_decisions(drifted: dict[str, Any]) -> None:
    page, evaluation, alerts = _page(drifted)
    # every input in every segment has its card, with the decided statistic and its rule
    assert len(set(evaluation.segments)) == 9  # 8 segments and all
    sections = re.findall(r'<section class="input" data-input="([^"]+)">(.*?)</section>', page)
    levels = {
        (name, segment): level
        for name, body in sections
        for level, segment in re.findall(r'<div class="card (\w+)" data-segment="([^"]+)"', body)
    }
    inputs = {c.feature for c in evaluation.results}
    assert next(name for name, _ in sections) == "age"  # the drifted input comes first
    assert {name for name, _ in sections} == inputs
    assert inputs >= {"age", "income", "country", "prediction.score", "prediction.label"}
    assert len(levels) == len(evaluation.results) == 9 * len(inputs)
    for comparison in evaluation.results:
        assert comparison.decision is not None
        assert html.escape(comparison.decision["text"]) in page  # the rule, word for word
    assert {levels[("age", s)] for s in set(evaluation.segments)} == {"critical"}
    assert sum(1 for (f, _), lv in levels.items() if f != "age" and lv != "ok") <= 2
    # null quantiles and thresholds are shown as the core computed them
    age_all = next(
        c for s, c in zip(evaluation.segments, evaluation.results, strict=True)
        if s == "all" and c.feature == "age"
    )  # fmt: skip
    assert age_all.decision is not None
    assert f"<td class=n>{age_all.decision['null_quantile']:.3g}</td>" in page
    # the window's alerts, latency percentiles and the quality section
    assert alerts and all(a.summary.replace("'", "&#x27;") in page for a in alerts)
    assert "<h2>Latency</h2>" in page and "p99" in page and "<h2>Data quality</h2>" in page
    # self-contained: nothing to fetch, no script
    assert "<script" not in page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)


def test_the_bins_that_moved_most_are_the_shifted_ones() -> None:
    rng = np.random.default_rng(11)
    ref, cur = NumericSketch(), NumericSketch()
    ref.update_batch(rng.normal(0.0, 1.0, 20_000))
    cur.update_batch(np.concatenate([rng.normal(0.0, 1.0, 15_000), np.full(5_000, 2.2)]))
    plot = numeric_plot(ref, cur)
    (label, moved), *_ = plot.moved
    lo, hi = (float(x) for x in label.split(" to "))
    assert lo <= 2.2 <= hi  # the bin the mass moved into
    assert 0.2 <= moved <= 0.26  # 25% of the window, less the 1-2% the reference had there
    assert plot.svg.count('fill="#fff1a8"') == 3


def _chromium() -> str:
    binary = os.environ.get("DRIFTWIRE_CHROMIUM") or shutil.which("chromium")
    if not binary:
        pytest.fail(
            "no chromium for the report's browser test: run 'make browser' "
            "(apt-get install chromium) or set DRIFTWIRE_CHROMIUM to a Chromium binary"
        )
    return binary


def _ink(image: Image.Image, colour: tuple[int, int, int]) -> int:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(colour)).sum(axis=2) < 40).sum())


def test_the_report_renders_in_a_real_browser(drifted: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    root: Path = drifted["root"]
    out = run_cli(
        "report", "--events", str(root / "today.jsonl"), "--baseline", str(root / "b.dwb"),
        "-o", str(root / "report.html"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert re.search(r"report of churn 1\.4\.2, window .*: 126 tests, 9 alerts firing", out.stderr)
    page_file = root / "report.html"
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            boxes = page.eval_on_selector_all(
                "svg.plot",
                "els => els.map(e => { const r = e.getBoundingClientRect();"
                " return [r.x, r.y + window.scrollY, r.width, r.height]; })",
            )
            shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
        finally:
            browser.close()
    assert errors == []
    assert requests == [page_file.as_uri()]  # nothing but the file itself
    assert len(boxes) == 126  # 14 inputs (12 features, score, label) x (8 segments + all)
    scale = shot.width / 1400
    for x, y, w, h in boxes:
        assert w >= 300 and h >= 30
        plot = shot.crop(
            (round(x * scale), round(y * scale), round((x + w) * scale), round((y + h) * scale))
        )
        area = plot.width * plot.height
        assert _ink(plot, REFERENCE_RGB) > 0.01 * area  # both distributions are drawn
        assert _ink(plot, CURRENT_RGB) > 0.01 * area
    assert page_file.stat().st_size < 600_000


def test_the_fixed_rule_and_a_frozen_reference_render_too() -> None:
    start = StreamSpec(events=1).start_ms
    spec = StreamSpec(
        events=12_000,
        seed=5,
        events_per_second=12_000 / 1200,
        changes=(Change("income", start + 12 * MINUTE, 2.0),),
    )
    settings = Settings.model_validate({"detect": {"rule": "fixed"}})
    evaluations: list[Evaluation] = []
    pipeline = InMemoryPipeline(settings, on_evaluation=evaluations.append)
    alerts = list(pipeline.run(generate(spec)))
    evaluation = evaluations[-1]
    assert evaluation.reference is not None and evaluation.reference.kind == "frozen_window"
    page = render_report(evaluation, alerts, settings.detect, generated_ms=0)
    assert "rule fixed thresholds" in page
    assert page.count('<svg class="plot"') == len(evaluation.results)
    income = [
        c for s, c in zip(evaluation.segments, evaluation.results, strict=True)
        if c.feature == "income" and s == "all"
    ]  # fmt: skip
    assert income and all(c.decision is None for c in income)
    for c in income:
        assert html.escape(f"fixed: {c.result.statistic} ") in page
    assert 'data-input="income"' in page
    first = page.index('<section class="input"')
    assert page.index('data-input="income"') == page.index("data-input", first)
