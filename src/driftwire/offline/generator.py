"""Synthetic inference-event streams with known truth, for the demo, tests and load tests.

Deterministic from a seed. A :class:`Change` shifts one feature (or the prediction score, or
the latency) in one segment from a given event time on, and optionally reverts later.

>>> spec = StreamSpec(events=4, seed=1)
>>> [len(v) > 50 for v in generate(spec)]
[True, True, True, True]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

REGIONS = ("eu", "us", "apac", "latam")
TIERS = ("gold", "silver")
COUNTRIES = ("DE", "FR", "US", "BR", "IN", "JP", "GB", "ES")
PLANS = ("free", "basic", "pro", "enterprise")

#: The malformed shapes ``generate`` can mix in, each with the decoder reason it must get.
MALFORMED: tuple[tuple[bytes, str], ...] = (
    (b"{not json", "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (
        b'{"model": "m", "model_version": "1", "features": {}, "prediction": 1, "latency_ms": 1}',
        "missing_field",
    ),
    (
        b'{"timestamp": 1700000000000, "model": "m", "model_version": "1",'
        b' "features": {"a": [1]}, "prediction": 1, "latency_ms": 1}',
        "wrong_type",
    ),
    (
        b'{"timestamp": 1700000000000, "model": "m", "model_version": "1",'
        b' "features": {}, "prediction": 1, "latency_ms": -3}',
        "negative_latency",
    ),
    (
        b'{"timestamp": "yesterday", "model": "m", "model_version": "1",'
        b' "features": {}, "prediction": 1, "latency_ms": 1}',
        "bad_timestamp",
    ),
)


@dataclass(frozen=True)
class Change:
    """From ``start_ms`` (until ``end_ms``), add ``shift`` standard deviations to ``target``.

    ``target`` is a numeric feature name, ``"prediction"`` or ``"latency"`` (for latency the
    shift is a multiplicative factor); ``segment`` limits it to one segment key such as
    ``"region=eu,tier=gold"`` (``None``: all traffic).
    """

    target: str
    start_ms: int
    shift: float
    segment: str | None = None
    end_ms: int | None = None


def daily_pattern(
    target: str, amplitude: float, start_ms: int, days: int, segment: str | None = None
) -> tuple[Change, ...]:
    """A daily seasonal pattern: ``target`` shifted by ``amplitude * sin(2 pi h / 24)`` standard
    deviations in hour h of the day (UTC), hour by hour, for ``days`` days from ``start_ms``.

    >>> [round(c.shift, 2) for c in daily_pattern("age", 1.0, 0, 1)[:3]]
    [0.0, 0.26, 0.5]
    """
    hour = 3_600_000
    first = start_ms - start_ms % hour
    return tuple(
        Change(
            target,
            first + i * hour,
            amplitude * float(np.sin(2 * np.pi * ((first // hour + i) % 24) / 24)),
            segment,
            end_ms=first + (i + 1) * hour,
        )
        for i in range(days * 24)
    )


@dataclass(frozen=True)
class StreamSpec:
    """What to generate: events evenly spread in event time from ``start_ms``."""

    events: int
    seed: int = 0
    model: str = "churn"
    versions: tuple[str, ...] = ("1.4.2",)
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    events_per_second: float = 100.0
    numeric_features: int = 8
    categorical_features: int = 4
    regions: tuple[str, ...] = REGIONS
    tiers: tuple[str, ...] = TIERS
    changes: tuple[Change, ...] = field(default_factory=tuple)
    malformed_ratio: float = 0.0
    #: (feature, shape) pairs: a numeric feature's shape other than ``normal`` (see
    #: :data:`SHAPES`; changes still shift the underlying normal draw) or ``skewed`` for a
    #: categorical one (shares 75 / 20 / 4.5 / 0.5%)
    shapes: tuple[tuple[str, str], ...] = ()

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.events / self.events_per_second * 1000)


#: Numeric shapes: ``z`` is the standard normal draw (plus any change), ``m`` and ``s`` the
#: feature's mean and sd. Monotone in ``z``; ``integer`` and ``zero_inflated`` have ties.
SHAPES: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "normal": lambda z, m, s: m + s * z,
    "lognormal": lambda z, m, s: m * np.exp(0.5 * z),
    "heavy_tailed": lambda z, m, s: m * np.exp(1.5 * z),
    "uniform": lambda z, m, s: m + s * np.sqrt(3.0) * np.tanh(z * 0.8),
    "bimodal": lambda z, m, s: m + s * (z + 2.5 * np.tanh(4.0 * z)),
    "integer": lambda z, m, s: np.maximum(0.0, np.round(2.0 + 1.5 * z)),
    "zero_inflated": lambda z, m, s: np.where(z < 0.5, 0.0, s * (z - 0.5)),
}
SKEWED = np.cumsum([0.75, 0.2, 0.045, 0.005])


def numeric_names(spec: StreamSpec) -> list[str]:
    base = [
        "age",
        "income",
        "tenure_days",
        "sessions_7d",
        "basket_value",
        "discount",
        "support_calls",
        "pages_per_visit",
    ]
    return [base[i] if i < len(base) else f"num_{i}" for i in range(spec.numeric_features)]


def categorical_names(spec: StreamSpec) -> list[str]:
    base = ["country", "plan", "device", "newsletter"]
    return [base[i] if i < len(base) else f"cat_{i}" for i in range(spec.categorical_features)]


def generate(spec: StreamSpec) -> Iterator[bytes]:
    """Yield the encoded events of ``spec`` in event-time order."""
    rng = np.random.default_rng(spec.seed)
    chunk = 10_000
    for first in range(0, spec.events, chunk):
        n = min(chunk, spec.events - first)
        yield from _chunk(spec, rng, first, n)


def _chunk(spec: StreamSpec, rng: np.random.Generator, first: int, n: int) -> Iterator[bytes]:
    idx = np.arange(first, first + n)
    ts = spec.start_ms + (idx * 1000.0 / spec.events_per_second).astype(np.int64)
    region = rng.integers(0, len(spec.regions), n)
    tier = rng.integers(0, len(spec.tiers), n)
    version = rng.integers(0, len(spec.versions), n)
    nums = numeric_names(spec)
    cats = categorical_names(spec)
    # feature i ~ Normal(mean 10 * (i + 1), sd (i + 1)); a change adds shift * sd
    num = rng.normal(0.0, 1.0, (n, len(nums)))
    score = rng.beta(2, 5, n)
    latency = rng.lognormal(np.log(12.0), 0.3, n)
    for ch in spec.changes:
        hit = ts >= ch.start_ms
        if ch.end_ms is not None:
            hit &= ts < ch.end_ms
        if ch.segment is not None:
            keys = np.char.add(
                np.char.add("region=", np.asarray(spec.regions)[region]),
                np.char.add(",tier=", np.asarray(spec.tiers)[tier]),
            )
            hit &= keys == ch.segment
        if ch.target == "prediction":
            score = np.where(hit, np.clip(score + ch.shift * 0.16, 0, 1), score)
        elif ch.target == "latency":
            latency = np.where(hit, latency * ch.shift, latency)
        else:
            col = nums.index(ch.target)
            num[:, col] = np.where(hit, num[:, col] + ch.shift, num[:, col])
    scale = np.arange(1, len(nums) + 1, dtype=np.float64)
    z, num = num, np.round(num * scale + 10.0 * scale, 3)
    cat_idx = rng.integers(0, 4, (n, len(cats)))
    for name, shape in spec.shapes:
        if name in cats:  # extra draws only for shaped streams: the defaults stay as they were
            cat_idx[:, cats.index(name)] = np.searchsorted(SKEWED, rng.random(n), side="right")
        else:
            j = nums.index(name)
            num[:, j] = np.round(SHAPES[shape](z[:, j], 10.0 * scale[j], scale[j]), 3)
    choices = [COUNTRIES, PLANS, ("ios", "android", "web", "tv"), (True, False, True, False)]
    bad = rng.random(n) < spec.malformed_ratio
    bad_kind = rng.integers(0, len(MALFORMED), n)
    for i in range(n):
        if bad[i]:
            yield MALFORMED[bad_kind[i]][0]
            continue
        features: dict[str, object] = dict(zip(nums, num[i].tolist(), strict=True))
        for j, name in enumerate(cats):
            features[name] = choices[j % len(choices)][cat_idx[i, j]]
        yield orjson.dumps(
            {
                "event_id": f"{spec.seed}-{first + i}",
                "timestamp": int(ts[i]),
                "model": spec.model,
                "model_version": spec.versions[version[i]],
                "segment": {"region": spec.regions[region[i]], "tier": spec.tiers[tier[i]]},
                "features": features,
                "prediction": {
                    "score": round(float(score[i]), 4),
                    "label": "churn" if score[i] > 0.5 else "stay",
                },
                "latency_ms": round(float(latency[i]), 2),
            }
        )
