"""Stage 1's pure core on the pipeline benchmark's events, without a broker: where the CPU goes.

The events of ``bench_pipeline.py`` (200,000 by default: 1 model, 2 versions, 12 features,
8 segments, 16 minutes of event time, round-robin over 4 partitions) are handed to a
:class:`~driftwire.profiling.partitions.ProfileCore` as the profile stage hands them: one
partition's ``--fetch`` records at a time through ``decode_batch`` and ``ProfileCore.process``,
then ``ProfileCore.due`` after each round of the 4 partitions, as after a ``getmany``. Prints
CPU µs per event of decoding, folding and producing partials (best of ``--repeat``), and a
digest of every partial and watermark record: two checkouts that give the same digest for the
same ``--fetch`` produce byte-identical partials (the digest changes with the fetch size, as
the quantile sketches' bytes depend on the batches they were fed in).

    python load_tests/bench_stage1_core.py [--events 200000] [--fetch 500 2000 8000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen

from driftwire.decode.decoder import DEFAULT_LIMITS, decode_batch
from driftwire.offline.generator import generate
from driftwire.ops.config import Settings
from driftwire.stages.profile_core import profile_core

PARTITIONS = 4
MINUTES = 16
NOW_MS = 1_767_225_600_000 + 10**9  # after every event: nothing is idle or in the future


def events(total: int) -> list[list[bytes]]:
    """The pipeline benchmark's events, split over the partitions as ``loadgen`` sends them."""
    specs = loadgen.build_spec(
        events=total,
        seed=7,
        versions=2,
        numeric=8,
        categorical=4,
        segments=8,
        events_per_second=total / (MINUTES * 60),
        drift=("income", MINUTES // 2),
        drift_segment="region=eu,tier=gold",
    )
    values = [value for spec in specs for value in generate(spec)]
    return [values[p::PARTITIONS] for p in range(PARTITIONS)]


def run_once(
    parts: list[list[bytes]], fetch: int, profiler: cProfile.Profile | None
) -> tuple[float, float, float, str]:
    """CPU seconds of decoding, folding and ``due``; the digest of every record produced."""
    core = profile_core(Settings(), topic="events", partitions=PARTITIONS)
    for p in range(PARTITIONS):
        core.assign(p, None)
    digest = hashlib.sha256()
    positions = [0] * PARTITIONS
    decoding = folding = emitting = 0.0
    while any(positions[p] < len(parts[p]) for p in range(PARTITIONS)):
        if profiler is not None:
            profiler.enable()
        for p in range(PARTITIONS):
            start = positions[p]
            chunk = parts[p][start : start + fetch]
            if not chunk:
                continue
            positions[p] += len(chunk)
            offsets = np.arange(start, start + len(chunk), dtype=np.int64)
            t0 = time.process_time()
            batch = decode_batch(chunk, DEFAULT_LIMITS)
            t1 = time.process_time()
            core.process(p, batch, offsets[batch.index], NOW_MS)
            t2 = time.process_time()
            decoding += t1 - t0
            folding += t2 - t1
            core.note_position(p, positions[p], len(parts[p]))
        t0 = time.process_time()
        records = core.due(NOW_MS).records
        emitting += time.process_time() - t0
        if profiler is not None:
            profiler.disable()
        for record in records:
            digest.update(record.key or b"")
            digest.update(record.value)
    for p in range(PARTITIONS):
        for record in core.flush(p).records:
            digest.update(record.value)
    return decoding, folding, emitting, digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--fetch", type=int, nargs="+", default=[500, 2000, 8000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile the core (stderr)")
    args = ap.parse_args(argv)
    parts = events(args.events)
    per_event = 1e6 / args.events
    profiler = cProfile.Profile() if args.profile else None
    print("fetch  decode_us  fold_us  due_us  digest")
    for fetch in args.fetch:
        runs = [run_once(parts, fetch, profiler) for _ in range(args.repeat)]
        best = [min(run[i] for run in runs) * per_event for i in range(3)]
        digests = sorted({run[3] for run in runs})
        print(f"{fetch:>5}  {best[0]:9.2f}  {best[1]:7.2f}  {best[2]:6.2f}  {' '.join(digests)}")
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
