"""Throughput of the stage-1 profiler on one core, without Kafka and without the decoder.

Builds :class:`~driftwire.decode.batch.DecodedBatch` objects directly (2,000 events x 12 features x
8
segments by default: 8 numeric and 4 categorical features, 1% nulls), folds them through a
:class:`~driftwire.profiling.profiler.Profiler` one event-time second per batch, so 60-second
buckets
close along the way, and prints:

* feature-values per second and microseconds per event (grouping, folding and closing),
* serialized bytes per numeric and per categorical feature per (segment, bucket),
* resident memory per (feature, segment, bucket) of filled sketches,
* a CPU calibration (``sum(range(1000))``) to compare machines.

Target: >= 6,000,000 feature-values/s (under 2 us per 12-feature event).

    python load_tests/bench_profiler.py [--batches 240] [--json results.json] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from driftwire.decode import _native
from driftwire.decode.batch import DecodedBatch
from driftwire.decode.decoder import DEFAULT_LIMITS
from driftwire.profiling.clock import EventClock
from driftwire.profiling.profiler import ClosedBucket, Profiler
from driftwire.sketch.numeric import CategoricalSketch, NumericSketch
from driftwire.sketch.profile import Profile

REGIONS = ("eu", "us", "apac", "latam")
TIERS = ("gold", "silver")
COUNTRIES = ("DE", "FR", "US", "BR", "IN", "JP", "GB", "ES", "IT", "NL")
PLANS = ("free", "basic", "pro", "enterprise")
TARGET_VALUES_PER_S = 6_000_000


def make_batch(
    rng: np.random.Generator,
    *,
    events: int,
    numeric: int,
    categorical: int,
    segments: int,
    missing_rate: float,
    start_ms: int,
    span_ms: int,
) -> DecodedBatch:
    seg_pool = [{"region": r, "tier": t} for r in REGIONS for t in TIERS][:segments]
    seg_pick = rng.integers(0, len(seg_pool), events)
    num = rng.normal(50.0, 10.0, (events, numeric)).round(3)
    cats = [COUNTRIES, PLANS]
    cat_pick = rng.integers(0, 1 << 30, (events, categorical))
    nulls = rng.random((events, numeric + categorical)) < missing_rate
    features = []
    for i in range(events):
        row: dict[str, float | str | None] = {}
        for j in range(numeric):
            row[f"num_{j}"] = None if nulls[i, j] else float(num[i, j])
        for j in range(categorical):
            pool = cats[j % 2]
            row[f"cat_{j}"] = None if nulls[i, numeric + j] else pool[cat_pick[i, j] % len(pool)]
        features.append(row)
    return DecodedBatch(
        index=np.arange(events, dtype=np.int64),
        timestamp_ms=np.sort(rng.integers(start_ms, start_ms + span_ms, events)).astype(np.int64),
        model=["churn"] * events,
        model_version=["1.4.2"] * events,
        segment=[dict(seg_pool[k]) for k in seg_pick.tolist()],
        features=features,
        prediction_score=rng.random(events),
        prediction_label=[("yes" if s > 0.5 else "no") for s in rng.random(events).tolist()],
        latency_ms=rng.gamma(2.0, 6.0, events),
        event_id=[None] * events,
    )


def fresh(batch: DecodedBatch, offset_ms: int) -> DecodedBatch:
    """A copy whose rows are new objects decoded by orjson, as the decoder's are.

    Reusing one set of row objects would measure cache misses that the real pipeline, which
    folds what it has just decoded, does not have (about 10x slower columns on a busy VM).
    """
    rows = orjson.loads(
        orjson.dumps(
            [
                batch.model,
                batch.model_version,
                batch.segment,
                batch.features,
                batch.prediction_label,
            ]
        )
    )
    return DecodedBatch(
        index=batch.index.copy(),
        timestamp_ms=batch.timestamp_ms + offset_ms,
        model=rows[0],
        model_version=rows[1],
        segment=rows[2],
        features=rows[3],
        prediction_score=batch.prediction_score.copy(),
        prediction_label=rows[4],
        latency_ms=batch.latency_ms.copy(),
        event_id=list(batch.event_id),
    )


def encode_events(batch: DecodedBatch) -> list[bytes | None]:
    """The raw values of a template batch's events (timestamps are set after decoding)."""
    return [
        orjson.dumps(
            {
                "timestamp": 0,
                "model": batch.model[i],
                "model_version": batch.model_version[i],
                "segment": batch.segment[i],
                "features": batch.features[i],
                "prediction": {"score": float(batch.prediction_score[i]), "label": label},
                "latency_ms": float(batch.latency_ms[i]),
            }
        )
        for i, label in enumerate(batch.prediction_label)
    ]


def time_folds(
    profiler: Profiler, make: Callable[[int], DecodedBatch], args: argparse.Namespace
) -> tuple[float, float, list[float], list[ClosedBucket]]:
    """Fold ``args.batches`` batches; wall and CPU seconds, per-batch seconds, closed buckets."""
    gc.collect()
    prof = cProfile.Profile() if args.profile else None
    elapsed = cpu = 0.0
    per_batch = []
    closed: list[ClosedBucket] = []
    for i in range(args.batches):
        batch = make(i)
        if prof:
            prof.enable()
        started, started_cpu = time.perf_counter(), time.thread_time()
        result_closed = profiler.fold(batch, now_ms=None).closed
        took = time.perf_counter() - started
        cpu += time.thread_time() - started_cpu
        elapsed += took
        per_batch.append(took)
        if prof:
            prof.disable()
        closed.extend(result_closed)
        del batch
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return elapsed, cpu, per_batch, closed


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_per_sketch(kind: str, values_per_sketch: int, sketches: int = 2_000) -> float:
    """Resident bytes per filled sketch, measured in a fresh interpreter (RSS delta).

    A fresh process, because freed memory of the benchmark would be reused without growing
    the RSS. Includes the Python objects and the allocator's overhead.
    """
    here = str(Path(__file__).resolve().parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import bench_profiler as b; "
        f"print(b._memory_here({kind!r}, {values_per_sketch}, {sketches}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def _memory_here(kind: str, values_per_sketch: int, sketches: int) -> float:
    rng = np.random.default_rng(1)
    data = rng.normal(size=values_per_sketch)
    cats = [COUNTRIES[i % len(COUNTRIES)] for i in range(values_per_sketch)]
    gc.collect()
    before = rss_bytes()
    held: list[NumericSketch | CategoricalSketch] = []
    for _ in range(sketches):
        if kind == "numeric":
            s = NumericSketch()
            s.update_batch(data)
        else:
            c = CategoricalSketch()
            c.update_batch(cats)
            s = c
        held.append(s)
    gc.collect()
    used = rss_bytes() - before
    del held
    return used / sketches


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    n_features = args.numeric + args.categorical
    templates = [
        make_batch(
            rng,
            events=args.events,
            numeric=args.numeric,
            categorical=args.categorical,
            segments=args.segments,
            missing_rate=args.missing_rate,
            start_ms=0,
            span_ms=args.batch_span_ms,
        )
        for _ in range(8)
    ]
    base = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a bucket boundary
    clock = EventClock(bucket_ms=args.bucket_ms, allowed_lateness_ms=args.lateness_ms)
    profiler = Profiler(clock)

    # warm-up on a separate profiler (imports, caches, allocator)
    warm = Profiler(EventClock(bucket_ms=args.bucket_ms, allowed_lateness_ms=args.lateness_ms))
    for i in range(5):
        warm.fold(fresh(templates[i % len(templates)], base + i * args.batch_span_ms))

    def from_lists(i: int) -> DecodedBatch:
        return fresh(templates[i % len(templates)], base + i * args.batch_span_ms)

    elapsed, cpu, per_batch, closed = time_folds(profiler, from_lists, args)
    columns_result: dict[str, object] = {"decoder": "python"}
    if _native.ACTIVE:  # the same events folded from the compiled decoder's columns
        raws = [encode_events(t) for t in templates]

        def from_columns(i: int) -> DecodedBatch:
            batch = _native.decode_batch_columns(raws[i % len(raws)], DEFAULT_LIMITS)
            assert batch is not None and batch.columns is not None
            batch.timestamp_ms = templates[i % len(templates)].timestamp_ms + (
                base + i * args.batch_span_ms
            )
            return batch

        warm = Profiler(EventClock(bucket_ms=args.bucket_ms, allowed_lateness_ms=args.lateness_ms))
        for i in range(5):
            warm.fold(from_columns(i))
        other = Profiler(EventClock(bucket_ms=args.bucket_ms, allowed_lateness_ms=args.lateness_ms))
        c_elapsed, c_cpu, c_per_batch, _ = time_folds(other, from_columns, args)
        n_events = args.events * args.batches
        columns_result = {
            "decoder": "native",
            "columns_us_per_event": round(c_elapsed / n_events * 1e6, 3),
            "columns_us_per_event_median_batch": round(
                float(np.median(c_per_batch)) / args.events * 1e6, 3
            ),
            "columns_cpu_seconds": round(c_cpu, 4),
        }
    closed.extend(profiler.flush())

    events = args.events * args.batches
    values = events * n_features
    per_bucket = args.events * args.bucket_ms / args.batch_span_ms
    full = [c for c in closed if c.events >= 0.9 * per_bucket]
    numeric_bytes, categorical_bytes, profile_bytes, per_segment_events = [], [], [], []
    for bucket in full or closed:
        for profile in bucket.segments.values():
            profile_bytes.append(len(profile.to_bytes()))
            per_segment_events.append(profile.n_events)
            for sketch in profile.features.values():
                size = len(sketch.to_bytes())
                (numeric_bytes if isinstance(sketch, NumericSketch) else categorical_bytes).append(
                    size
                )
    per_cell = int(np.median(per_segment_events))
    calibration_us = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    result: dict[str, object] = {
        "events": events,
        "features_per_event": n_features,
        "segments": args.segments,
        "batch_events": args.events,
        "seconds": round(elapsed, 4),
        "cpu_seconds": round(cpu, 4),
        "feature_values_per_s": round(values / elapsed),
        "us_per_event": round(elapsed / events * 1e6, 3),
        "us_per_event_median_batch": round(float(np.median(per_batch)) / args.events * 1e6, 3),
        "us_per_event_best_batch": round(min(per_batch) / args.events * 1e6, 3),
        "target_feature_values_per_s": TARGET_VALUES_PER_S,
        "target_met": values / elapsed >= TARGET_VALUES_PER_S,
        "closed_buckets": len(closed),
        "events_per_segment_bucket": per_cell,
        "bytes_per_numeric_feature_bucket": int(np.mean(numeric_bytes)) if numeric_bytes else 0,
        "bytes_per_categorical_feature_bucket": (
            int(np.mean(categorical_bytes)) if categorical_bytes else 0
        ),
        "bytes_per_segment_profile": int(np.mean(profile_bytes)) if profile_bytes else 0,
        "rss_bytes_per_numeric_feature_segment_bucket": round(
            memory_per_sketch("numeric", per_cell)
        ),
        "rss_bytes_per_categorical_feature_segment_bucket": round(
            memory_per_sketch("categorical", per_cell)
        ),
        **columns_result,
        "calibration_sum_range_1000_us": round(calibration_us, 2),
        "python": sys.version.split()[0],
    }
    assert isinstance(closed[0].segments[next(iter(closed[0].segments))], Profile)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000, help="events per batch")
    ap.add_argument("--numeric", type=int, default=8, help="numeric features per event")
    ap.add_argument("--categorical", type=int, default=4, help="categorical features per event")
    ap.add_argument("--segments", type=int, default=8, help="distinct segments (<= 8)")
    ap.add_argument("--missing-rate", type=float, default=0.01)
    ap.add_argument("--batches", type=int, default=240)
    ap.add_argument("--batch-span-ms", type=int, default=1_000, help="event time per batch")
    ap.add_argument("--bucket-ms", type=int, default=60_000)
    ap.add_argument("--lateness-ms", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile the fold loop (stderr)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    result = run(args)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
