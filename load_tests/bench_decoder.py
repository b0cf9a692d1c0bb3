"""Throughput of the event decoder on one core, next to plain ``orjson.loads`` on the same bytes.

Generates realistic inference events (12 features: 6 numeric, 1 nullable numeric, 3 categorical,
2 boolean; a segment with 2 keys; an event id) from three producers interleaved in one topic,
each with its own conventions, as a shared inference-events topic carries them:

* ``churn``:  ISO timestamps in milliseconds with ``Z`` (JavaScript ``toISOString``), score
* ``fraud``:  epoch-millisecond timestamps, ``{"score": ..., "label": ...}`` predictions
* ``ranker``: ISO timestamps in microseconds with ``+00:00`` (Python ``isoformat``), score

Then, in batches of ``--batch`` values as the consumer's ``getmany`` hands them over, it times
``[orjson.loads(v) for v in batch]`` and ``decode_batch(batch)`` alternately, best of
``--repeats`` passes over all events, and prints both rates and their ratio.

Target: the decoder (parse, validate, columns) at >= 0.6x the rate of bare ``orjson.loads``.

    python load_tests/bench_decoder.py [--events 200000] [--batch 2000] [--json results.json]
                                       [--producers mixed|churn|fraud|ranker] [--invalid-rate 0.01]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
import timeit
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from driftwire.decode import _native
from driftwire.decode.decoder import _decode_python, decode_batch

TARGET_RATIO = 0.6
START = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
REGIONS = ("eu", "us", "apac", "latam")
TIERS = ("gold", "silver", "bronze")
COUNTRIES = ("DE", "FR", "US", "BR", "IN", "JP", "GB", "ES", "IT", "NL")
PLANS = ("free", "basic", "pro", "enterprise")
CHANNELS = ("web", "ios", "android", "store")


def make_event(rnd: random.Random, producer: str, moment: datetime) -> dict[str, Any]:
    features: dict[str, Any] = {
        "age": rnd.randrange(18, 90),
        "income": round(rnd.lognormvariate(10.5, 0.6), 2),
        "tenure_months": rnd.randrange(0, 120),
        "balance": round(rnd.gauss(1_000, 400), 2),
        "sessions_7d": rnd.randrange(0, 50),
        "score_external": rnd.random(),
        "days_since_login": None if rnd.random() < 0.1 else rnd.randrange(0, 400),
        "country": rnd.choice(COUNTRIES),
        "plan": rnd.choice(PLANS),
        "channel": None if rnd.random() < 0.02 else rnd.choice(CHANNELS),
        "is_active": rnd.random() < 0.8,
        "has_card": rnd.random() < 0.3,
    }
    event: dict[str, Any] = {"event_id": str(uuid.UUID(int=rnd.getrandbits(128)))}
    if producer == "churn":
        event["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event["prediction"] = rnd.random()
    elif producer == "fraud":
        event["timestamp"] = int(moment.timestamp() * 1000)
        score = rnd.random()
        event["prediction"] = {"score": score, "label": "fraud" if score > 0.9 else "legit"}
    else:
        event["timestamp"] = moment.isoformat(timespec="microseconds")
        event["prediction"] = rnd.gauss(0.0, 1.0)
    event.update(
        model=producer,
        model_version=rnd.choice(("1.4.2", "1.5.0")),
        segment={"region": rnd.choice(REGIONS), "tier": rnd.choice(TIERS)},
        features=features,
        latency_ms=round(rnd.expovariate(1 / 12), 3),
    )
    return event


PRODUCERS = {"churn": 5, "fraud": 3, "ranker": 2}  # shares of the mixed stream


def make_values(
    count: int, seed: int, invalid_rate: float, producers: tuple[str, ...] = tuple(PRODUCERS)
) -> list[bytes | None]:
    rnd = random.Random(seed)
    weights = [PRODUCERS[name] for name in producers]
    values: list[bytes | None] = []
    for i in range(count):
        producer = rnd.choices(producers, weights=weights)[0]
        moment = START + timedelta(microseconds=i * 5_000 + rnd.randrange(5_000))
        event = make_event(rnd, producer, moment)
        if rnd.random() >= invalid_rate:
            values.append(orjson.dumps(event))
            continue
        kind = rnd.randrange(3)  # refused values of three kinds
        if kind == 0:
            event["features"]["age"] = {"years": 40}  # wrong_type on features.age
            values.append(orjson.dumps(event))
        elif kind == 1:
            values.append(None)  # a tombstone: empty
        else:
            values.append(orjson.dumps(event)[:-20])  # cut short: not_json
    return values


def loads_tolerant(batch: list[bytes | None]) -> list[Any]:
    """The baseline when some values are bad: ``orjson.loads`` with the errors caught."""
    loads, error, out = orjson.loads, orjson.JSONDecodeError, []
    for value in batch:
        try:
            parsed = loads(value)  # type: ignore[arg-type]
        except error:
            continue
        out.append(parsed)
    return out


def best_times(batches: list[list[bytes | None]], repeats: int) -> dict[str, float]:
    """Best wall-clock and CPU seconds of each side over ``repeats`` alternating passes.

    CPU time (this process only) is the steadier figure on a shared machine.
    """
    loads = orjson.loads
    clean = all(value is not None for batch in batches for value in batch)
    sides = ("loads", "decode", "python") if _native.ACTIVE else ("loads", "decode")
    best = {f"{side}_{clock}": float("inf") for side in sides for clock in ("wall", "cpu")}
    for _ in range(repeats):
        for side in sides:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            if side == "loads" and clean:
                for batch in batches:
                    [loads(value) for value in batch]  # type: ignore[arg-type]
            elif side == "loads":
                for batch in batches:
                    loads_tolerant(batch)
            elif side == "decode":
                for batch in batches:
                    decode_batch(batch)
            else:  # the pure-Python decoder beside the compiled one
                for batch in batches:
                    _decode_python(batch)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            best[f"{side}_wall"] = min(best[f"{side}_wall"], wall)
            best[f"{side}_cpu"] = min(best[f"{side}_cpu"], cpu)
    return best


def run(args: argparse.Namespace) -> dict[str, object]:
    producers = tuple(PRODUCERS) if args.producers == "mixed" else (args.producers,)
    values = make_values(args.events, args.seed, args.invalid_rate, producers)
    batches = [values[i : i + args.batch] for i in range(0, len(values), args.batch)]
    accepted = sum(len(decode_batch(batch)) for batch in batches)  # also the warm-up
    best = best_times(batches, args.repeats)
    loads_rate, decode_rate = args.events / best["loads_wall"], args.events / best["decode_wall"]
    cpu_ratio = best["loads_cpu"] / best["decode_cpu"]
    calibration_us = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    return {
        "events": args.events,
        "batch_events": args.batch,
        "repeats": args.repeats,
        "mean_event_bytes": round(sum(len(v) for v in values if v) / len(values), 1),
        "producers": args.producers,
        "invalid_rate": args.invalid_rate,
        "accepted": accepted,
        "orjson_loads_events_per_s": round(loads_rate),
        "decode_batch_events_per_s": round(decode_rate),
        "ratio": round(decode_rate / loads_rate, 3),
        "ratio_cpu_time": round(cpu_ratio, 3),
        "target_ratio": TARGET_RATIO,
        "target_met": decode_rate / loads_rate >= TARGET_RATIO,
        "orjson_loads_us_per_event": round(best["loads_wall"] / args.events * 1e6, 3),
        "decode_batch_us_per_event": round(best["decode_wall"] / args.events * 1e6, 3),
        "orjson_loads_cpu_us_per_event": round(best["loads_cpu"] / args.events * 1e6, 3),
        "decode_batch_cpu_us_per_event": round(best["decode_cpu"] / args.events * 1e6, 3),
        "decoder": "native" if _native.ACTIVE else "python",
        "python_decoder_events_per_s": round(
            args.events / best.get("python_wall", best["decode_wall"])
        ),
        "python_decoder_ratio": round(
            best["loads_wall"] / best.get("python_wall", best["decode_wall"]), 3
        ),
        "calibration_us_sum_range_1000": round(calibration_us, 3),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "orjson": orjson.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events to generate")
    ap.add_argument("--batch", type=int, default=2_000, help="values per decode_batch call")
    ap.add_argument("--repeats", type=int, default=3, help="passes; the best one counts")
    ap.add_argument("--invalid-rate", type=float, default=0.0, help="share of refused events")
    ap.add_argument(
        "--producers",
        choices=["mixed", *PRODUCERS],
        default="mixed",
        help="the three producers interleaved, or one of them alone",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if args.events < 1 or args.batch < 1 or args.repeats < 1:
        ap.error("--events, --batch and --repeats must be >= 1")
    result = run(args)
    rows = [
        ("orjson.loads", result["orjson_loads_events_per_s"], result["orjson_loads_us_per_event"]),
        (
            f"decode_batch ({result['decoder']})",
            result["decode_batch_events_per_s"],
            result["decode_batch_us_per_event"],
        ),
    ]
    if result["decoder"] == "native":
        rate = result["python_decoder_events_per_s"]
        assert isinstance(rate, int)
        rows.append(("python decoder", rate, round(1e6 / rate, 3)))
    print(
        f"{result['events']:,} events ({result['producers']}) of "
        f"{result['mean_event_bytes']} bytes, batches of {result['batch_events']:,}, "
        f"best of {result['repeats']}"
    )
    print(f"{'':23s} {'events/s':>12s} {'us/event':>9s}")
    for name, rate, micros in rows:
        print(f"{name:23s} {rate:>12,} {micros:>9.3f}")
    verdict = "met" if result["target_met"] else "NOT met"
    print(
        f"ratio {result['ratio']:.3f} (target >= {TARGET_RATIO}: {verdict}); "
        f"by CPU time {result['ratio_cpu_time']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
