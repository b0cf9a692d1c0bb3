"""What the detect stage's Faust app produces with: its changelog (a snapshot of a model after
every partial merged) is compressed with zstd, which costs a tenth of aiokafka's level-9 gzip
on these snapshots for the same size (``load_tests/bench_stage2.py``)."""

from __future__ import annotations

import numpy as np
from aiokafka.codec import gzip_encode, zstd_decode, zstd_encode

from driftwire.ops.config import Settings
from driftwire.stages.detect._faust import FaustOptions, app_settings


def test_the_detect_stage_produces_with_zstd() -> None:
    settings = app_settings(
        Settings(), FaustOptions(), app_id="driftwire-detect", partitions=6, replication=1
    )
    assert settings["producer_compression_type"] == "zstd"


def test_zstd_keeps_a_snapshot_as_small_as_gzip_did() -> None:
    """A snapshot is JSON with profiles (float32 sketch levels) as hex: zstd compresses it
    within 10% of gzip (seeded data; both take it to about 45% of its size)."""
    levels = np.sort(np.random.default_rng(3).normal(size=20_000).astype("<f4")).tobytes()
    snapshot = b'{"pending":{"0":{"region=eu":"' + levels.hex().encode() + b'"}}}'
    packed = zstd_encode(snapshot)
    assert zstd_decode(packed) == snapshot
    assert len(packed) <= 1.1 * len(gzip_encode(snapshot))
    assert len(packed) < 0.5 * len(snapshot)
