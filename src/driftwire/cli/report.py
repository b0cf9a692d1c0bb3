"""``driftwire report``: events against a baseline, one HTML page per model version.

With ``--url``, the page comes from a running worker instead (its ``GET /report``: the last
window it evaluated of the model version, rendered by the same code, alerts firing now).

The events (a file, or a range of a topic) go through both stages in memory exactly as
``driftwire replay`` runs them; the page shows one detection window of each model version:
the last one, or the one ending first after ``--at``. Its alerts are those firing at that
window's end (as the detector emitted them) and those it resolved.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from driftwire.alerts.alert import Alert, iso
from driftwire.cli.replay import load_baselines
from driftwire.cli.sources import EventSource, parse_time, read_events
from driftwire.cli.status import unreachable
from driftwire.detect.detector import Evaluation
from driftwire.errors import DriftwireError, InputError
from driftwire.offline.report import render_report
from driftwire.ops.config import load_settings
from driftwire.stages.inmemory import InMemoryPipeline


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
    source: EventSource,
    *,
    baselines: list[str],
    out: str,
    config: str | None,
    at: str | None,
    model: str | None,
) -> int:
    settings = load_settings(config)
    store = load_baselines(baselines)
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

    pipelines: list[InMemoryPipeline] = []
    alerts: list[Alert] = []

    def start(partitions: int) -> None:
        topic = source.topic or source.name
        pipelines.append(
            InMemoryPipeline(
                settings,
                store,
                topic=topic,
                on_evaluation=keep,
                partitions=partitions,
                keep_state_parts=False,
            )
        )

    def feed(partition: int, values: list[bytes]) -> None:
        alerts.extend(pipelines[0].feed(values, partition))

    read_events(source, settings, feed, start, what="report")
    if pipelines:
        alerts.extend(pipelines[0].finish())
    valid = pipelines[0].stats.events_valid if pipelines else 0
    for notice in pipelines[0].stats.baseline_notices if pipelines else []:
        print(f"warning: {notice.message}", file=sys.stderr)
    if not chosen:
        which = f" of model {model}" if model else ""
        raise InputError(
            f"{source.name}: no window{which} was evaluated against a reference "
            f"({valid} events; a window needs "
            f"detect.window_buckets complete buckets and a baseline or a frozen first window)"
        )
    targets = _outputs(out, sorted(chosen))
    now = int(time.time() * 1000)
    for key, evaluation in sorted(chosen.items()):
        end = iso(evaluation.bucket_end_ms)
        mine = _firing_at(alerts, key, end)
        page = render_report(
            evaluation, mine, settings.detect, generated_ms=now, source=source.name
        )
        targets[key].write_text(page, encoding="utf-8")
        drifted = sum(1 for a in mine if a.status == "firing")
        print(
            f"report of {key[0]} {key[1]}, window {iso(evaluation.start_ms)} – {end}: "
            f"{len(evaluation.results)} tests, {drifted} alerts firing, "
            f"{len(page.encode()) / 1024:.0f} kB -> {targets[key]}",
            file=sys.stderr,
        )
    return 0


def fetch_report(url: str, model: str | None, version: str | None, out: str) -> int:
    """Write the worker's report of ``model`` (``version``) to ``out``."""
    if not model:
        raise InputError("driftwire report --url needs --model NAME (driftwire status lists them)")
    params = {"model": model, **({"version": version} if version else {})}
    address = f"{url.rstrip('/')}/report?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(address, timeout=30) as response:
            page = response.read()
    except urllib.error.HTTPError as exc:
        why = exc.read().decode(errors="replace").strip() or exc.reason
        raise DriftwireError(f"{url} answered {exc.code}: {why}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise unreachable(url, exc) from None
    Path(out).write_bytes(page)
    print(
        f"report of {model}{' ' + version if version else ''} from {url}: "
        f"{len(page) / 1024:.0f} kB -> {out}",
        file=sys.stderr,
    )
    return 0
