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


def test_a_partition_that_reported_and_lags_is_waited_for_after_the_grace_too() -> None:
    c = Completeness(grace_ms=50)
    c.observe(partition=0, partitions=3, watermark_ms=300, idle=False, now_ms=0)
    c.observe(partition=1, partitions=3, watermark_ms=100, idle=False, now_ms=0)
    assert c.complete_until(now_ms=49) is None  # partition 2 not heard from yet
    assert c.complete_until(now_ms=500) == 100  # partition 2 is late; partition 1 only slow
    c.observe(partition=1, partitions=3, watermark_ms=200, idle=False, now_ms=501)
    assert c.complete_until(now_ms=502) == 200


def test_state_round_trip() -> None:
    c = Completeness(grace_ms=50)
    c.observe(partition=0, partitions=2, watermark_ms=300, idle=True, now_ms=0)
    c.observe(partition=1, partitions=2, watermark_ms=200, idle=False, now_ms=0)
    c.complete_until(now_ms=0)
    r = Completeness.from_state(50, c.to_state())
    assert r.complete_until(now_ms=0) == c.complete_until(now_ms=0) == 200


def test_a_new_model_inherits_the_partitions_but_completes_nothing_yet() -> None:
    c = Completeness(grace_ms=50)
    c.observe(partition=0, partitions=2, watermark_ms=300, idle=False, now_ms=0)
    c.observe(partition=1, partitions=2, watermark_ms=200, idle=True, now_ms=0)
    assert c.complete_until(now_ms=1) == 300
    new = c.for_new_model(grace_ms=50)
    assert (new.partitions, new.watermarks, new.idle) == (2, {0: 300, 1: 200}, {1})
    assert new.to_state()["complete"] is None
    assert new.complete_until(now_ms=1) == 300  # from its own watermarks, once asked
    assert c.to_state()["complete"] == 300  # the original is untouched
