"""The shell of ``driftwire baseline build``: read a file, write the baseline, publish it."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from driftwire.detect.reference import Reference, SmallReference, baseline_key, small_profiles
from driftwire.offline.baseline import BaselineSpec, build_baseline, count_rows
from driftwire.ops.config import Settings, load_settings
from driftwire.ops.progress import progress_bar


def _split(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


async def publish(settings: Settings, reference: Reference) -> None:
    """Put ``reference`` on the compacted baselines topic, keyed ``model/version``."""
    from aiokafka import AIOKafkaProducer

    from driftwire.ops.broker import wait_for_broker
    from driftwire.ops.topics import baselines_spec, ensure_topics

    await wait_for_broker(settings.kafka)
    await ensure_topics(settings, [baselines_spec(settings)])  # compacted, never auto-created
    producer = AIOKafkaProducer(
        **settings.kafka.client_options(),
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        max_request_size=16 * 1024 * 1024,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topics.baselines,
            key=baseline_key(reference.model, reference.model_version),
            value=reference.to_bytes(),
        )
    finally:
        await producer.stop()


def run_baseline_build(args: argparse.Namespace) -> int:
    config = load_settings(args.config)  # detect.min_reference_count, and kafka to publish
    settings = config if args.publish else None
    spec = BaselineSpec(
        model=args.model,
        model_version=args.model_version,
        features=_split(args.features) or None,
        prediction_column=args.prediction_column,
        label_column=args.label_column,
        latency_column=args.latency_column,
        segment_columns=_split(args.segment_columns),
    )
    path = Path(args.file)
    with progress_bar(count_rows(path), "baseline") as advance:
        reference = build_baseline(path, spec, created_ms=int(time.time() * 1000), progress=advance)
    Path(args.output).write_bytes(reference.to_bytes())
    segments = len(reference.profiles) - 1
    print(
        f"baseline {reference.id}: {reference.count} rows, "
        f"{len(reference.profiles['all'].features)} features, {segments} segments "
        f"-> {args.output}",
        file=sys.stderr,
    )
    need = config.detect.min_reference_count
    small = small_profiles(reference, need)
    if small:
        notice = SmallReference(
            spec.model, spec.model_version, reference.kind, reference.id, small, need
        )
        print(f"warning: {notice.message}", file=sys.stderr)
    if settings is not None:
        asyncio.run(publish(settings, reference))
        print(
            f"published to {settings.topics.baselines} as "
            f"{baseline_key(spec.model, spec.model_version).decode()}",
            file=sys.stderr,
        )
    return 0
