"""``driftwire replay``: inference events through both stages, in memory.

The events come from a JSON Lines file, or from a past time range of a topic (``--topic T
--since ... --until ...``: a backfill, read by a fresh consumer that commits nothing, with one
event clock per partition as the worker has). Alerts go to stdout (or ``--out``) as JSON
Lines, each the CloudEvent the worker would have put on the alerts topic; rejected events are
reported with their reason on stderr at the end. Nothing is written to Kafka, so settings can
be tried on last week's traffic before the live worker gets them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from driftwire.alerts.alert import Alert
from driftwire.cli.sources import event_source, read_events
from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.errors import InputError
from driftwire.ops.config import load_settings
from driftwire.stages.inmemory import InMemoryPipeline


def load_baselines(names: list[str]) -> ReferenceStore:
    store = ReferenceStore()
    for name in names:
        try:
            store.put(Reference.from_bytes(Path(name).read_bytes()))
        except OSError as exc:
            raise InputError(f"cannot read baseline {name}: {exc.strerror}") from exc
    return store


def run_replay(
    file: str | None,
    *,
    config: str | None,
    baselines: list[str],
    out: str | None,
    topic: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> int:
    settings = load_settings(config)
    store = load_baselines(baselines)
    source = event_source(file, topic, since, until)
    pipelines: list[InMemoryPipeline] = []
    sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
    fired = 0

    def write(alerts: list[Alert]) -> None:
        nonlocal fired
        for alert in alerts:
            sink.write(orjson.dumps(alert.cloudevent(settings.alerts.source)) + b"\n")
            fired += 1

    def start(partitions: int) -> None:
        topic_name = source.topic or source.name
        pipelines.append(
            InMemoryPipeline(
                settings, store, topic=topic_name, partitions=partitions, keep_state_parts=False
            )
        )

    try:
        read_events(
            source,
            settings,
            lambda partition, values: write(pipelines[0].feed(values, partition)),
            start,
            what="replay",
        )
        if pipelines:
            write(pipelines[0].finish())
    finally:
        if out:
            sink.close()
        else:
            sink.flush()
    if not pipelines:
        return 0
    s = pipelines[0].stats
    print(
        f"replay of {source.name}: {s.events_valid} events profiled, {s.events_invalid} "
        f"rejected, {s.windows_evaluated} window evaluations, {fired} alert events",
        file=sys.stderr,
    )
    for small in s.small_references:
        print(f"warning: {small.message}", file=sys.stderr)
    for notice in s.baseline_notices:
        print(f"warning: {notice.message}", file=sys.stderr)
    for offset, rejection in s.rejections[:20]:
        print(
            f"  line {offset + 1}: {rejection.reason} {rejection.field or ''} {rejection.message}",
            file=sys.stderr,
        )
    return 0
