"""Generated inference events of a churn model, to follow the README's "your own topic" path
without a model server: to a file (as logged events) or to a topic through the producer library.

    python tools/sample_events.py logged.jsonl --events 50000
    python tools/sample_events.py --topic inference-events --events 40000 --minutes 60 \\
        --drift income:1.5:30

``--drift FEATURE:SD:MINUTE`` shifts FEATURE by SD standard deviations from MINUTE on, in
segment ``region=eu,tier=gold``. Event times start at 2026-01-01T00:00Z (the generator's
start), so the same command gives the same events.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import orjson

from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.producer import InferenceLogger

MINUTE_MS = 60_000
SEGMENT = "region=eu,tier=gold"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="write JSON Lines here")
    parser.add_argument("--topic", help="send to this topic instead")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="bootstrap servers (default: $DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--minutes", type=float, default=0, help="spread over (default: 100/s)")
    parser.add_argument("--drift", help="FEATURE:SD:MINUTE")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    if (args.file is None) == (args.topic is None):
        parser.error("give a file or --topic")
    start = StreamSpec(events=1).start_ms
    changes: tuple[Change, ...] = ()
    if args.drift:
        feature, sd, minute = args.drift.split(":")
        at = start + int(float(minute) * MINUTE_MS)
        changes = (Change(feature, at, float(sd), SEGMENT),)
    rate = args.events / (args.minutes * 60) if args.minutes else 100.0
    spec = StreamSpec(events=args.events, seed=args.seed, events_per_second=rate, changes=changes)
    if args.file:
        Path(args.file).write_bytes(b"\n".join(generate(spec)) + b"\n")
        print(f"{args.events} events -> {args.file}")
        return
    logger = InferenceLogger(
        args.bootstrap, topic=args.topic, max_queue_events=args.events, linger_ms=100
    )
    for value in generate(spec):
        e = orjson.loads(value)
        logger.log(
            model=e["model"],
            model_version=e["model_version"],
            features=e["features"],
            prediction=e["prediction"],
            latency_ms=e["latency_ms"],
            segment=e.get("segment"),
            event_id=e.get("event_id"),
            timestamp=e["timestamp"],
        )
    stats = logger.close(timeout=60)
    print(f"{stats.sent} events sent to {args.topic}, {stats.dropped} dropped")


if __name__ == "__main__":
    main()
