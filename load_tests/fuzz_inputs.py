"""Fault (e): fuzzed inputs through stage 1 -- no crash, every input accounted for, exactly.

Inputs are the valid events of ``tests/corpus`` mutated at random (seeded): fields replaced by
values of the wrong type, the wrong size or no value, deleted or added, NaN and infinities,
floods of features and segment keys, timestamps anywhere in time; then, for a share of them,
the serialized bytes mutated too (flipped, truncated, spliced with the invalid corpus, invalid
UTF-8, oversized). Each batch goes through the decoder and the profile core as the worker runs
them, and every input must end in exactly one place:

* dead-lettered, with one of the documented reason codes; or
* profiled: in a partial's event count, or set aside and counted as late or future, or dropped
  and counted by the ``models`` cap.

``python load_tests/fuzz_inputs.py [--inputs 1000000] [--seed 1] [--runs 10]`` runs a million, as
ten runs of 100,000 with seeds 1-10 (each checked exactly on its own), and writes the totals to
``load_tests/results/fuzz.json`` after every run; ``tests/faults/test_fuzzed_inputs.py`` runs
20,000.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from driftwire.decode.decoder import REASONS, decode_batch
from driftwire.decode.limits import DecoderLimits
from driftwire.ops.config import Settings
from driftwire.partials import Partial, decode_record
from driftwire.stages.profile_core import profile_core

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
RESULTS = ROOT / "load_tests" / "results" / "fuzz.json"
FIELDS = ("timestamp", "model", "model_version", "segment", "features", "prediction", "latency_ms")
ODD_VALUES: list[Any] = [
    None, "", 0, -1, -0.0, 1e308, -1e308, 10**30, True, False, [], {}, [1, "a"], {"a": {}},
    "x" * 300, "2026-11-22T15:04:05Z", "2026-13-45T99:99:99Z", "1e999", 1_767_225_600_000,
    -1_767_225_600_000, 2**63, "NaN", {"score": "a"}, {"score": 0.5, "label": 3}, "é\u2028\ud7ff",
]  # fmt: skip
START_MS = 1_767_225_600_000
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"\x00", b"\xff\xfe", b'"', b"{", b"}"]


@dataclass
class Tally:
    inputs: int = 0
    dead_lettered: int = 0
    valid: int = 0
    in_partials: int = 0
    late: int = 0
    future: int = 0
    dropped_by_cap: int = 0
    partials: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def check(self) -> None:
        """Every input in exactly one place; raises AssertionError naming the difference."""
        if self.valid + self.dead_lettered != self.inputs:
            raise AssertionError(f"{self.valid} valid + {self.dead_lettered} dead != {self.inputs}")
        profiled = self.in_partials + self.late + self.future + self.dropped_by_cap
        if profiled != self.valid:
            raise AssertionError(f"{profiled} accounted for != {self.valid} valid: {self}")
        unknown = set(self.reasons) - set(REASONS)
        if unknown:
            raise AssertionError(f"undocumented reasons {sorted(unknown)}")


def _base_events() -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for line in (CORPUS / "events_valid.jsonl").read_bytes().split(b"\n")
        if line.strip()
    ]


def _invalid_lines() -> list[bytes]:
    return [
        line for line in (CORPUS / "events_invalid.jsonl").read_bytes().split(b"\n") if line.strip()
    ]


def fuzzed(n: int, seed: int) -> Iterator[bytes | None]:
    """``n`` fuzzed inputs (``None`` is a tombstone), the same for the same seed."""
    rng = np.random.default_rng(seed)
    bases, invalid = _base_events(), _invalid_lines()
    raw_bases = [orjson.dumps(b) for b in bases]

    def odd() -> Any:
        return ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]

    # random texts of every length up to 300, drawn once: names, keys and values pick from them
    pool = [
        "".join(map(chr, rng.integers(32, 0x2FF, size=k).tolist()))
        for k in rng.integers(0, 301, size=4_000).tolist()
    ]

    def text(k: int) -> str:
        return pool[int(rng.integers(len(pool)))][:k]

    for i in range(n):
        roll = rng.random()
        if roll < 0.01:
            yield None if rng.random() < 0.5 else b""
            continue
        if roll < 0.02:
            yield invalid[int(rng.integers(len(invalid)))]
            continue
        event: dict[str, Any] = orjson.loads(raw_bases[int(rng.integers(len(bases)))])
        # in time order (10 ms apart, jittered by up to a minute), so most are on time
        event["timestamp"] = int(START_MS + 10 * i + rng.integers(-60_000, 1_000))
        for _ in range(int(rng.integers(0, 3))):
            what = rng.random()
            name = FIELDS[int(rng.integers(len(FIELDS)))]
            if what < 0.3:
                event[name] = odd()
            elif what < 0.4:
                event.pop(name, None)
            elif what < 0.6:
                features = event.get("features")
                if isinstance(features, dict):
                    features[text(int(rng.integers(0, 12)))] = odd()
            elif what < 0.62:
                event["features"] = {f"f{i}": float(i) for i in range(int(rng.integers(1, 1_500)))}
            elif what < 0.7:
                event["segment"] = {text(3): text(3) for _ in range(int(rng.integers(1, 40)))}
            elif what < 0.75:
                event["timestamp"] = int(rng.integers(-(2**62), 2**62))
            elif what < 0.9:
                event["model"] = text(int(rng.integers(0, 300)))
            else:
                event["latency_ms"] = float(rng.normal(0, 1e3))
        raw = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS) if _dumpable(event) else b"{"
        if rng.random() < 0.25:
            raw = _mutate_bytes(raw, rng)
        yield raw


def _dumpable(event: dict[str, Any]) -> bool:
    try:
        orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # an int beyond 64 bits: let the text say it
        return False
    return True


def _mutate_bytes(raw: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(raw)
    kind = rng.random()
    at = int(rng.integers(0, len(data) + 1))
    if kind < 0.25 and data:
        data[min(at, len(data) - 1)] = int(rng.integers(0, 256))
    elif kind < 0.45:
        del data[at:]
    elif kind < 0.75:
        data[at:at] = RAW_TOKENS[int(rng.integers(len(RAW_TOKENS)))]
    elif kind < 0.9:
        # a number replaced by a non-finite literal, where the decoder must catch it
        text = bytes(data).replace(b"12.4", b"NaN", 1).replace(b"0.83", b"Infinity", 1)
        data = bytearray(text)
    else:
        data += b" " * 70_000  # oversized
    return bytes(data)


def run(inputs: int, seed: int, *, batch: int = 2_000) -> Tally:
    """Decode and profile ``inputs`` fuzzed values in batches, as the profile stage does."""
    return account(fuzzed(inputs, seed), now_ms=START_MS + 10 * inputs, batch=batch)


def account(values: Iterable[bytes | None], *, now_ms: int, batch: int = 2_000) -> Tally:
    """Decode and profile ``values`` in batches, as the profile stage does; ``now_ms`` is the
    wall clock for the future-events check."""
    settings = Settings.model_validate({"profile": {"max_models": 50}})
    limits = DecoderLimits(
        max_event_bytes=settings.profile.max_event_bytes,
        max_features=settings.profile.max_features,
    )
    core = profile_core(settings, topic="fuzz")
    core.assign(0, None)
    tally = Tally()
    values = iter(values)
    offset = 0

    def take(records: list[Any]) -> None:
        for out in records:
            record = decode_record(out.value)
            if isinstance(record, Partial):
                tally.partials += 1
                tally.in_partials += record.events

    while True:
        chunk = [v for _, v in zip(range(batch), values, strict=False)]
        if not chunk:
            break
        decoded = decode_batch(chunk, limits)
        tally.inputs += len(chunk)
        tally.valid += len(decoded)
        tally.dead_lettered += len(decoded.rejections)
        tally.reasons.update(r.reason for r in decoded.rejections)
        offsets = np.arange(offset, offset + len(chunk), dtype=np.int64)
        counts = core.process(0, decoded, offsets[decoded.index], now_ms)
        tally.late += sum(counts.late.values())
        tally.future += sum(counts.future.values())
        offset += len(chunk)
        core.note_position(0, offset)
        emission = core.due(now_ms)
        tally.dropped_by_cap += emission.overflow.get("models", 0)
        take(emission.records)
    emission = core.flush(0)
    tally.dropped_by_cap += emission.overflow.get("models", 0)
    take(emission.records)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--runs", type=int, default=10, help="independent runs (seeds seed, seed+1, ...)"
    )
    args = parser.parse_args()
    per_run = args.inputs // args.runs
    total = Tally()
    runs = []
    started = time.perf_counter()
    for k in range(args.runs):
        tally = run(per_run, args.seed + k)
        tally.check()  # every input of the run in exactly one place
        runs.append({"seed": args.seed + k, "inputs": tally.inputs, "valid": tally.valid})
        for name, value in asdict(tally).items():
            if name != "reasons":
                setattr(total, name, getattr(total, name) + value)
        total.reasons.update(tally.reasons)
        result = {
            **asdict(total),
            "reasons": dict(sorted(total.reasons.items())),
            "runs": runs,
            "complete": k + 1 == args.runs,
            "seconds": round(time.perf_counter() - started, 1),
        }
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")  # after every run
        print(json.dumps({"run": k, **runs[-1]}), flush=True)


if __name__ == "__main__":
    main()
