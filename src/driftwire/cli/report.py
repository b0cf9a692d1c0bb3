"""``driftwire report``: a file of events against a baseline, one HTML page per model version.

The events go through both stages in memory exactly as ``driftwire replay`` runs them; the
page shows one detection window of each model version: the last one, or the one ending first
after ``--at``. Its alerts are those firing at that window's end (as the detector emitted
them) and those it
resolved.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

from driftwire.alerts.alert import Alert, iso
from driftwire.detect.detector import Evaluation
from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.errors import InputError
from driftwire.offline.event_baseline import event_lines
from driftwire.offline.report import render_report
from driftwire.ops.config import load_settings
from driftwire.ops.progress import progress_bar
from driftwire.stages.inmemory import InMemoryPipeline


def parse_time(text: str, option: str) -> int:
    """Epoch ms from an RFC 3339 date-time (``2026-01-01T10:00:00Z``) or epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(
            f"{option} {text!r}: give a date-time with its offset (2026-01-01T10:00:00Z) "
            "or epoch milliseconds"
        )
    return int(moment.timestamp() * 1000)


def _outputs(out: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Path]:
    path = Path(out)
    if len(keys) == 1:
        return {keys[0]: path}
    suffix = path.suffix or ".html"
    return {(m, v): path.with_name(f"{path.stem}-{m}-{v}{suffix}") for m, v in keys}


def _firing_at(alerts: list[Alert], key: tuple[str, str], end: str | None) -> list[Alert]:
    """The alerts of ``key`` firing at the window ending ``end``, and those it resolved."""
    latest: dict[str, Alert] = {}
    for a in alerts:
        if (a.labels.get("model"), a.labels.get("model_version")) != key:
            continue
        ended = a.window.get("end")
        if end is not None and ended is not None and ended <= end:
            latest[a.fingerprint] = a
    return [a for a in latest.values() if a.status == "firing" or a.window.get("end") == end]


def run_report(
    events: str,
    *,
    baselines: list[str],
    out: str,
    config: str | None,
    at: str | None,
    model: str | None,
) -> int:
    settings = load_settings(config)
    store = ReferenceStore()
    for name in baselines:
        try:
            store.put(Reference.from_bytes(Path(name).read_bytes()))
        except OSError as exc:
            raise InputError(f"cannot read baseline {name}: {exc.strerror}") from exc
    path = Path(events)
    if not path.is_file():
        raise InputError(f"no such file: {events}")
    at_ms = parse_time(at, "--at") if at is not None else None
    chosen: dict[tuple[str, str], Evaluation] = {}

    def keep(evaluation: Evaluation) -> None:
        key = (evaluation.model, evaluation.model_version)
        if model is not None and evaluation.model != model:
            return
        if at_ms is None:
            chosen[key] = evaluation  # the last one wins
        elif evaluation.bucket_end_ms > at_ms and key not in chosen:
            chosen[key] = evaluation

    pipeline = InMemoryPipeline(settings, store, topic=path.name, on_evaluation=keep)
    alerts: list[Alert] = []
    with progress_bar(path.stat().st_size, "report", unit="B") as advance:
        for chunk in event_lines(path, advance):
            alerts += pipeline.feed(chunk)
        alerts += pipeline.finish()
    if not chosen:
        which = f" of model {model}" if model else ""
        raise InputError(
            f"{path.name}: no window{which} was evaluated against a reference "
            f"({pipeline.stats.events_valid} events; a window needs "
            f"detect.window_buckets complete buckets and a baseline or a frozen first window)"
        )
    targets = _outputs(out, sorted(chosen))
    now = int(time.time() * 1000)
    for key, evaluation in sorted(chosen.items()):
        end = iso(evaluation.bucket_end_ms)
        mine = _firing_at(alerts, key, end)
        page = render_report(evaluation, mine, settings.detect, generated_ms=now, source=path.name)
        targets[key].write_text(page, encoding="utf-8")
        drifted = sum(1 for a in mine if a.status == "firing")
        print(
            f"report of {key[0]} {key[1]}, window {iso(evaluation.start_ms)} – {end}: "
            f"{len(evaluation.results)} tests, {drifted} alerts firing, "
            f"{len(page.encode()) / 1024:.0f} kB -> {targets[key]}",
            file=sys.stderr,
        )
    return 0
