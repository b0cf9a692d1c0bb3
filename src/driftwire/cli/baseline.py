"""The shell of ``driftwire baseline build``: read a file, write the baseline, publish it."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from driftwire.cli.sources import EventSource, event_source, read_events
from driftwire.decode.limits import DecoderLimits
from driftwire.detect.reference import Reference, SmallReference, baseline_key, small_profiles
from driftwire.errors import InputError, TransportError
from driftwire.offline.baseline import BaselineSpec, build_baseline, count_rows
from driftwire.offline.event_baseline import EventBaselineBuilder, looks_like_events
from driftwire.ops.config import Settings, load_settings
from driftwire.ops.progress import progress_bar
from driftwire.profiling.catalog import ProfilerLimits


def _split(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


async def publish(settings: Settings, reference: Reference) -> None:
    """Put ``reference`` on the compacted baselines topic, keyed ``model/version``."""
    from driftwire.ops.broker import wait_for_broker
    from driftwire.ops.kafka_check import authorization_problem, check_kafka

    await wait_for_broker(settings.kafka)
    await check_kafka(settings.kafka)  # a wrong password or certificate: one line, exit 1
    try:
        await _publish(settings, reference)
    except Exception as exc:  # a missing ACL: one line naming it, exit 1
        needs = {settings.topics.baselines: "Write and Describe"}
        denied = authorization_problem(exc, settings, needs)
        if denied is None:
            raise
        raise TransportError(denied, retriable=False) from None


async def _publish(settings: Settings, reference: Reference) -> None:
    from aiokafka import AIOKafkaProducer

    from driftwire.ops.topics import baselines_spec, ensure_topics

    await ensure_topics(settings, [baselines_spec(settings)])  # compacted, never auto-created
    producer = AIOKafkaProducer(
        **settings.kafka.client_options(),
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        max_request_size=16 * 1024 * 1024,
    )
    try:  # stopped whatever start() refused too, or asyncio reports it unclosed at exit
        await producer.start()
        await producer.send_and_wait(
            settings.topics.baselines,
            key=baseline_key(reference.model, reference.model_version),
            value=reference.to_bytes(),
        )
    finally:
        await producer.stop()


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _from_events(args: argparse.Namespace, config: Settings, source: EventSource) -> Reference:
    p = config.profile
    builder = EventBaselineBuilder(
        decoder_limits=DecoderLimits(
            max_event_bytes=p.max_event_bytes, max_features=p.max_features
        ),
        profiler_limits=ProfilerLimits(max_segments=p.max_segments, max_features=p.max_features),
    )
    read_events(
        source, config, lambda _, values: builder.add(values), lambda _: None, what="baseline"
    )
    built = builder.finish(
        created_ms=int(time.time() * 1000),
        source=source.name,
        model=args.model,
        model_version=args.model_version,
    )
    if built.rejected:
        reasons = ", ".join(f"{n} {r}" for r, n in built.rejected_by_reason.most_common())
        _warn(f"{built.rejected} lines refused ({reasons}), first {built.first_rejection}")
    if built.skipped:
        others = ", ".join(f"{m} {v} ({n})" for (m, v), n in sorted(built.skipped.items()))
        _warn(f"events of other model versions left out: {others}")
    for (model, what), n in sorted(built.overflow.items()):
        _warn(f"{n} events of {model} over profile.max_{what}: folded into __other__")
    return built.reference


def _from_table(args: argparse.Namespace, path: Path, config: Settings) -> Reference:
    missing = [
        o for o, v in (("--model", args.model), ("--model-version", args.model_version)) if not v
    ]
    if missing:
        raise InputError(
            f"{path.name}: a table needs {' and '.join(missing)} (events files carry them)"
        )
    spec = BaselineSpec(
        model=args.model,
        model_version=args.model_version,
        features=_split(args.features) or None,
        prediction_column=args.prediction_column,
        label_column=args.label_column,
        latency_column=args.latency_column,
        segment_columns=_split(args.segment_columns),
        target_column=args.target_column,
        target_is_class=args.target_classes,
        score_threshold=config.truth.score_threshold,
    )
    with progress_bar(count_rows(path), "baseline") as advance:
        return build_baseline(
            path, spec, created_ms=int(time.time() * 1000), progress=advance, warn=_warn
        )


def run_baseline_build(args: argparse.Namespace) -> int:
    config = load_settings(args.config)  # detect.min_reference_count, and kafka to publish
    settings = config if args.publish else None
    source = event_source(args.file, args.topic, args.since, args.until)
    path = source.file
    if path is not None and args.format == "events":
        events = True
    elif path is not None:
        events = args.format == "auto" and looks_like_events(path)
    elif args.format == "table":
        raise InputError("--topic holds inference events: drop --format table")
    else:
        events = True
    if events:
        column_options = [
            name
            for name, value in (
                ("--features", args.features),
                ("--prediction-column", args.prediction_column),
                ("--label-column", args.label_column),
                ("--latency-column", args.latency_column),
                ("--segment-columns", args.segment_columns),
                ("--target-column", args.target_column),
            )
            if value
        ]
        if column_options:
            raise InputError(
                f"{source.name} holds inference events: {', '.join(column_options)} apply to "
                "tables only (an event names its features, prediction, latency and segment); "
                "drop them, or pass --format table"
            )
        reference = _from_events(args, config, source)
    elif path is not None:
        reference = _from_table(args, path, config)
    else:
        raise InputError("give a file of training data or logged events, or --topic")
    Path(args.output).write_bytes(reference.to_bytes())
    segments = len(reference.profiles) - 1
    unit = "events" if events else "rows"
    print(
        f"baseline {reference.id} of {reference.model} {reference.model_version}: "
        f"{reference.count} {unit}, "
        f"{len(reference.profiles['all'].features)} features "
        f"({', '.join(sorted(reference.profiles['all'].features)[:8])}"
        f"{', ...' if len(reference.profiles['all'].features) > 8 else ''}), "
        f"{segments} segments -> {args.output}",
        file=sys.stderr,
    )
    if reference.performance is not None:
        print(f"reference performance: {_performance_line(reference.performance)}", file=sys.stderr)
    need = config.detect.min_reference_count
    small = small_profiles(reference, need)
    if small:
        notice = SmallReference(
            reference.model, reference.model_version, reference.kind, reference.id, small, need
        )
        print(f"warning: {notice.message}", file=sys.stderr)
    if settings is not None:
        asyncio.run(publish(settings, reference))
        print(
            f"published to {settings.topics.baselines} as "
            f"{baseline_key(reference.model, reference.model_version).decode()}",
            file=sys.stderr,
        )
    return 0


def _performance_line(blob: bytes) -> str:
    """One line of the reference's realized performance, for the build's summary."""
    from driftwire.truth.reference import ReferencePerformance

    every = ReferencePerformance.from_bytes(blob).segment("all")
    parts = [f"{every.joined} labelled rows"]
    if every.classification is not None:
        m = every.classification.metrics()
        parts.append(f"accuracy {m.accuracy.value:.4g}")
        if m.auc is not None:
            parts.append(f"ROC AUC {m.auc.value:.4g}")
    if every.regression is not None:
        r = every.regression.metrics()
        parts += [f"MAE {r.mae.value:.4g}", f"RMSE {r.rmse.value:.4g}"]
    return ", ".join(parts)
