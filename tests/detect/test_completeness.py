"""Bucket completeness from per-partition watermarks, idleness and the grace period."""

from __future__ import annotations

from driftwire.detect.completeness import Completeness


def test_minimum_over_partitions() -> None:
    c = Completeness(grace_ms=1_000_000)
    c.observe(partition=0, partitions=2, watermark_ms=300, idle=False, now_ms=0)
    c.observe(partition=1, partitions=2, watermark_ms=100, idle=False, now_ms=0)
    assert c.complete_until(now_ms=1) == 100


def test_idle_partition_does_not_hold_back() -> None:
    c = Completeness(grace_ms=1_000_000)
    c.observe(partition=0, partitions=2, watermark_ms=300, idle=False, now_ms=0)
    c.observe(partition=1, partitions=2, watermark_ms=100, idle=True, now_ms=0)
    assert c.complete_until(now_ms=1) == 300


def test_silent_partition_waits_for_grace_only() -> None:
    c = Completeness(grace_ms=50)
    c.observe(partition=0, partitions=3, watermark_ms=300, idle=False, now_ms=0)
    assert c.complete_until(now_ms=49) is None
    assert c.complete_until(now_ms=50) == 300


def test_state_round_trip() -> None:
    c = Completeness(grace_ms=50)
    c.observe(partition=0, partitions=2, watermark_ms=300, idle=True, now_ms=0)
    c.observe(partition=1, partitions=2, watermark_ms=200, idle=False, now_ms=0)
    c.complete_until(now_ms=0)
    r = Completeness.from_state(50, c.to_state())
    assert r.complete_until(now_ms=0) == c.complete_until(now_ms=0) == 200
