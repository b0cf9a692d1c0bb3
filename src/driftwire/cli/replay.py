"""``driftwire replay FILE``: a file of inference events through both stages, in memory.

Alerts go to stdout (or ``--out``) as JSON Lines, each the CloudEvent the worker would have
put on the alerts topic; rejected lines are reported with their reason on stderr at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.errors import InputError
from driftwire.ops.config import load_settings
from driftwire.ops.progress import progress_bar
from driftwire.stages.inmemory import InMemoryPipeline


def _lines(path: Path, advance: object) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            advance(len(line))  # type: ignore[operator]
            stripped = line.rstrip(b"\r\n")
            if stripped:
                yield stripped


def run_replay(file: str, *, config: str | None, baselines: list[str], out: str | None) -> int:
    settings = load_settings(config)
    store = ReferenceStore()
    for name in baselines:
        try:
            store.put(Reference.from_bytes(Path(name).read_bytes()))
        except OSError as exc:
            raise InputError(f"cannot read baseline {name}: {exc.strerror}") from exc
    path = Path(file)
    if not path.is_file():
        raise InputError(f"no such file: {file}")
    pipeline = InMemoryPipeline(settings, store, topic=path.name)
    sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
    fired = 0
    try:
        with progress_bar(path.stat().st_size, "replay", unit="B") as advance:
            for alert in pipeline.run(_lines(path, advance)):
                sink.write(orjson.dumps(alert.cloudevent(settings.alerts.source)) + b"\n")
                fired += 1
    finally:
        if out:
            sink.close()
        else:
            sink.flush()
    s = pipeline.stats
    print(
        f"replay: {s.events_valid} events profiled, {s.events_invalid} rejected, "
        f"{s.windows_evaluated} window evaluations, {fired} alert events",
        file=sys.stderr,
    )
    for small in s.small_references:
        print(f"warning: {small.message}", file=sys.stderr)
    for offset, rejection in s.rejections[:20]:
        print(
            f"  line {offset + 1}: {rejection.reason} {rejection.field or ''} {rejection.message}",
            file=sys.stderr,
        )
    return 0
