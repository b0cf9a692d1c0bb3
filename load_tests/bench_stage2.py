"""Stage 2 alone, in one process: CPU per evaluated window and per partial merged.

The whole-worker benchmark (``bench_pipeline.py --only worker,scale_out``) measures stage 2 as a
separate ``--stage detect`` process beside profile processes on a shared machine, which moves
with the load and with how the partials arrive. This harness makes it repeatable:

1. **records**: the benchmark's events (12 features x 8 segments x 2 versions, 4 input
   partitions round-robin, a drift in one segment halfway; ``--events`` over ``--event-minutes``
   of event time) go through stage 1's core (:func:`~driftwire.stages.profile_core.profile_core`)
   in 2,000-event batches per partition, and the partials-topic records it emits (partials and
   watermarks, the bytes stage 1 produces) are kept in order (cached with ``--records PATH``);
2. **stage 2**: a fresh :class:`~driftwire.detect.detector.Detector` reads them as the detect
   stage's record handler does: the intake checks (:func:`~driftwire.detect.intake.admit`:
   JSON, schema, id), the replayed-watermark filter of its slot, the merge or the evaluation,
   the evaluation metrics, then the stored parts and the changelog snapshots of the models that
   changed (``driftwire.stages.detect._table.StateTable`` into an in-memory stand-in for the
   Faust table: the bytes are encoded, hashed, compressed with the producer's codec as the
   stage's producer would (``--codec``, default the stage's) and kept, not sent to a broker).

It prints stage 2's CPU seconds, per evaluated window (one model version's window with its
comparisons), per partial merged, and the alert transitions, snapshot bytes and a digest of
the alerts and of the last snapshots, so that two code versions can be shown to agree.
``--profile`` adds a cProfile pass over step 2 (its own run) and prints the top functions by
cumulative and by own time. The clock is fixed (processing time does not move), so the run is
deterministic.

    python load_tests/bench_stage2.py [--events 500000] [--repeat 3] [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pickle
import pstats
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka.codec import gzip_encode, zstd_encode
from prometheus_client import CollectorRegistry

from driftwire.decode.decoder import decode_batch
from driftwire.decode.limits import DecoderLimits
from driftwire.detect.detector import Detector, Evaluation
from driftwire.detect.intake import IntakeLimits, Rejected, admit
from driftwire.detect.reference import ReferenceStore
from driftwire.offline.generator import generate
from driftwire.ops.config import Settings
from driftwire.ops.metrics import DetectMetrics
from driftwire.partials import Partial
from driftwire.stages.detect._slots import _Slot

try:
    from driftwire.stages.compression import output_compression as changelog_compression
except ImportError:  # a checkout from before the stages chose their codec: they sent gzip

    def changelog_compression() -> str:
        return "gzip"


from driftwire.stages.detect._table import StateTable
from driftwire.stages.profile_core import profile_core

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402

PARTITIONS = 4
BATCH = 2000
DRIFT_SEGMENT = "region=eu,tier=gold"
#: stage 2's clock: after every event of the run, fixed (no grace period runs out)
NOW_MS = 1_900_000_000_000


def build_records(events: int, minutes: int) -> list[bytes]:
    """The partials-topic records stage 1 emits for the benchmark's events, in order."""
    settings = Settings.model_validate({"profile": {"idle_partition_seconds": 2}})
    specs = loadgen.build_spec(
        events=events,
        seed=7,
        versions=2,
        numeric=8,
        categorical=4,
        segments=8,
        events_per_second=events / (minutes * 60),
        drift=("income", minutes // 2),
        drift_segment=DRIFT_SEGMENT,
    )
    per_partition: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
    for i, value in enumerate(generate(specs[0])):
        per_partition[i % PARTITIONS].append(value)
    core = profile_core(settings, topic="bench", partitions=PARTITIONS)
    limits = DecoderLimits(
        max_event_bytes=settings.profile.max_event_bytes,
        max_features=settings.profile.max_features,
    )
    for p in range(PARTITIONS):
        core.assign(p, None)
    offsets = [0] * PARTITIONS
    out: list[bytes] = []
    for start in range(0, max(len(v) for v in per_partition), BATCH):
        for p in range(PARTITIONS):
            values = per_partition[p][start : start + BATCH]
            if not values:
                continue
            batch = decode_batch(values, limits)
            index = np.arange(offsets[p], offsets[p] + len(values), dtype=np.int64)
            core.process(p, batch, index[batch.index], None)
            offsets[p] += len(values)
            core.note_position(p, offsets[p])
            out += [r.value for r in core.due(None).records]
    for p in range(PARTITIONS):
        out += [r.value for r in core.flush(p).records]
    return out


CODECS: dict[str, Callable[[bytes], bytes] | None] = {
    "gzip": gzip_encode,  # aiokafka's: level 9
    "zstd": zstd_encode,
    "none": None,
}


class _Table:
    """What :class:`StateTable` writes to, without a broker: the latest bytes per key, each
    record compressed as the stage's producer would (one record per batch: the snapshots are
    hundreds of KB each)."""

    def __init__(self, codec: str) -> None:
        self.data: dict[bytes, bytes] = {}
        self.sent = 0  # changelog records (snapshots and parts)
        self.sent_bytes = 0
        self.compressed_bytes = 0
        self.codec_s = 0.0  # CPU in the codec
        self._codec = CODECS[codec]

    def _send(self, value: bytes | None) -> None:
        self.sent += 1
        self.sent_bytes += len(value or b"")
        if self._codec is None or not value:
            self.compressed_bytes += len(value or b"")
            return
        t = time.process_time()
        self.compressed_bytes += len(self._codec(value))
        self.codec_s += time.process_time() - t

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self._send(value)

    def __getitem__(self, key: bytes) -> bytes:
        return self.data[key]

    def __delitem__(self, key: bytes) -> None:
        del self.data[key]

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.data.items())

    def send_changelog(
        self, partition: int, key: bytes, value: bytes | None, value_serializer: str
    ) -> None:
        self._send(value)


class _App:
    """What :meth:`StateTable.create` asks of a Faust app: its table."""

    def __init__(self, table: _Table) -> None:
        self._table = table

    def Table(self, name: str, **options: Any) -> _Table:  # Faust's name
        return self._table


async def _nothing() -> None:
    return None


def run_stage2(
    records: list[bytes], codec: str, profiler: cProfile.Profile | None = None
) -> dict[str, Any]:
    """Feed ``records`` to a fresh detector as the detect stage does; CPU and what came out."""
    settings = Settings.model_validate({"profile": {"idle_partition_seconds": 2}})
    metrics = DetectMetrics(CollectorRegistry())
    windows: list[Evaluation] = []

    def evaluated(evaluation: Evaluation) -> None:
        windows.append(evaluation)
        metrics.evaluated(evaluation)

    bucket_ms = int(settings.profile.bucket_seconds * 1000)
    detector = Detector(
        settings.detect,
        settings.alerts,
        ReferenceStore(),
        bucket_ms=bucket_ms,
        on_evaluation=evaluated,
    )
    slot = _Slot(detector)
    store = StateTable(bucket_ms=bucket_ms, max_bytes=8 * 1024 * 1024, metrics=metrics)
    table = _Table(codec)
    store.create(
        _App(table),  # type: ignore[arg-type]
        settings.topics.partials_partitions,
        max_message_bytes=9 * 1024 * 1024,
        on_recover=_nothing,
    )
    ahead_s = (
        settings.profile.max_future_seconds
        + settings.profile.bucket_seconds
        + settings.detect.clock_skew_seconds
    )
    limits = IntakeLimits(bucket_ms=bucket_ms, max_ahead_ms=int(ahead_s * 1000))
    alerts: list[tuple[str, str]] = []
    partials = 0
    if profiler is not None:
        profiler.enable()
    phases = dict.fromkeys(("intake", "merge", "evaluate", "parts", "snapshots"), 0.0)
    clock = time.process_time
    cpu = clock()
    for value in records:
        t0 = clock()
        record = admit(value, now_ms=NOW_MS, limits=limits)
        if isinstance(record, Rejected):
            raise SystemExit(f"stage 1's record refused: {record}")
        t1 = clock()
        if isinstance(record, Partial):
            store.ensure_restored(slot, record.model)
            out = detector.on_partial(record, NOW_MS)
            slot.models.add(record.model)
            partials += 1
            phase = "merge"
        else:
            out = detector.on_watermark(record, NOW_MS) if slot.new_mark(record) else []
            phase = "evaluate"
        detector.take_small_references()
        detector.take_failures()
        detector.check_baselines()
        detector.take_baseline_notices()
        alerts += [(a.fingerprint, a.status) for a in out]
        t2 = clock()
        store.write_parts(slot)
        t3 = clock()
        store.write_snapshots(slot, detector.take_changed())
        t4 = clock()
        phases["intake"] += t1 - t0
        phases[phase] += t2 - t1
        phases["parts"] += t3 - t2
        phases["snapshots"] += t4 - t3
    cpu = clock() - cpu
    if profiler is not None:
        profiler.disable()
    comparisons = sum(len(w.results) for w in windows)
    digest = hashlib.blake2b(digest_size=16)
    for fingerprint, status in alerts:
        digest.update(f"{fingerprint}:{status};".encode())
    state = hashlib.blake2b(digest_size=16)
    for key in sorted(table.data):
        state.update(key + b"=" + table.data[key] + b";")
    return {
        "cpu_s": round(cpu, 3),
        "records": len(records),
        "partials": partials,
        "windows": len(windows),
        "comparisons": comparisons,
        "ms_per_window": round(cpu / max(1, len(windows)) * 1000, 1),
        "ms_per_partial": round(cpu / max(1, partials) * 1000, 2),
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "codec": codec,
        "codec_s": round(table.codec_s, 3),  # included in parts and snapshots
        "alerts": len(alerts),
        "alerts_digest": digest.hexdigest(),
        "changelog_records": table.sent,
        "changelog_bytes": table.sent_bytes,
        "changelog_compressed_bytes": table.compressed_bytes,
        "state_digest": state.hexdigest(),
    }


def top_functions(profiler: cProfile.Profile, top: int) -> str:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000, help="events of stage 1 (500,000)")
    ap.add_argument("--event-minutes", type=int, default=16, help="event time they span (16)")
    ap.add_argument("--records", type=Path, help="cache of step 1's records (made if missing)")
    ap.add_argument("--repeat", type=int, default=3, help="stage-2 runs; the best is reported")
    ap.add_argument("--profile", action="store_true", help="add a cProfile pass of stage 2")
    ap.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    ap.add_argument(
        "--codec",
        choices=sorted(CODECS),
        default=changelog_compression(),
        help="the changelog's compression (default: the detect stage's)",
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    calibration = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    if args.records is not None and args.records.exists():
        records = pickle.loads(args.records.read_bytes())
    else:
        records = build_records(args.events, args.event_minutes)
        if args.records is not None:
            args.records.write_bytes(pickle.dumps(records))
    runs = [run_stage2(records, args.codec) for _ in range(max(1, args.repeat))]
    digests = {(r["alerts_digest"], r["state_digest"]) for r in runs}
    if len(digests) != 1:
        raise SystemExit(f"stage 2 is not deterministic: {digests}")
    best = min(runs, key=lambda r: r["cpu_s"])
    result: dict[str, Any] = {
        "events": args.events,
        "event_minutes": args.event_minutes,
        "calibration_us": round(calibration, 1),
        "cpu_s_runs": [r["cpu_s"] for r in runs],
        **best,
    }
    print(json.dumps(result, indent=1))
    if args.profile:
        profiler = cProfile.Profile()
        run_stage2(records, args.codec, profiler)
        print(top_functions(profiler, args.top))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
