"""The codec of what the stages produce: zstd, which keeps a profile (a partial's payload) as
small as aiokafka's level-9 gzip did."""

from __future__ import annotations

import numpy as np
from aiokafka.codec import gzip_encode, zstd_decode, zstd_encode

from driftwire.sketch.profile import Profile
from driftwire.stages.compression import output_compression


def _profile_bytes(events: int = 5_000, features: int = 12) -> bytes:
    rng = np.random.default_rng(7)
    rows = [
        {f"f{j}": float(rng.normal()) if j % 3 else str(rng.integers(20)) for j in range(features)}
        for _ in range(events)
    ]
    p = Profile()
    p.update(
        rows,
        prediction_score=rng.random(events),
        prediction_label=["yes"] * events,
        latency_ms=rng.gamma(2.0, 5.0, events),
    )
    return p.to_bytes()


def test_the_stages_produce_with_zstd() -> None:
    # cramjam is a dependency, so aiokafka can write zstd; gzip is only the fallback
    assert output_compression() == "zstd"


def test_zstd_keeps_a_profile_about_as_small_as_gzip() -> None:
    """The CPU it saves is measured by ``load_tests/bench_pipeline.py``, not here."""
    payload = _profile_bytes()
    packed = zstd_encode(payload)
    assert zstd_decode(packed) == payload
    assert len(packed) <= 1.15 * len(gzip_encode(payload))
