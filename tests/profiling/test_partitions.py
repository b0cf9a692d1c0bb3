"""Stage 1's pure core: what it hands to the partials topic, batch by batch."""

from __future__ import annotations

import numpy as np
import orjson

from driftwire.decode.batch import DecodedBatch
from driftwire.decode.decoder import decode_batch
from driftwire.decode.limits import DecoderLimits
from driftwire.offline.generator import StreamSpec, generate
from driftwire.partials import Partial, Watermark, decode_record
from driftwire.profiling.catalog import ProfilerLimits
from driftwire.profiling.partitions import ProfileCore, Resume

BUCKET_MS = 60_000


def make_core(**options: object) -> ProfileCore:
    values: dict[str, object] = {
        "topic": "events",
        "partitions": 1,
        "bucket_ms": BUCKET_MS,
        "allowed_lateness_ms": 5_000,
        "max_future_ms": 300_000,
        "idle_ms": 30_000,
        "limits": ProfilerLimits(),
        **options,
    }
    core = ProfileCore(**values)  # type: ignore[arg-type]
    core.assign(0, None)
    return core


def events(*rows: tuple[int, str, str]) -> DecodedBatch:
    """Valid events from ``(timestamp ms, model, region)`` rows."""
    return decode_batch(
        [
            orjson.dumps(
                {
                    "timestamp": ms,
                    "model": model,
                    "model_version": "1",
                    "segment": {"region": region},
                    "features": {"x": 1.0},
                    "prediction": 0.5,
                    "latency_ms": 3.0,
                }
            )
            for ms, model, region in rows
        ]
    )


def offsets(batch: DecodedBatch, first: int = 0) -> np.ndarray:
    return np.arange(first, first + len(batch), dtype=np.int64)


def test_one_watermark_record_per_bucket_boundary_not_per_batch() -> None:
    core = make_core()
    values = list(generate(StreamSpec(events=6_000, seed=3, events_per_second=10.0)))  # 10 min
    limits = DecoderLimits(max_event_bytes=65_536, max_features=500)
    marks: list[Watermark] = []
    closed_until = 0  # end of the newest bucket emitted as a partial
    partials = 0
    batches = 0
    for first in range(0, len(values), 100):  # 10 s of event time per batch
        batch = decode_batch(values[first : first + 100], limits)
        offsets = np.arange(first, first + len(values[first : first + 100]), dtype=np.int64)
        core.process(0, batch, offsets[batch.index], None)
        batches += 1
        for out in core.due(None).records:
            record = decode_record(out.value)
            if isinstance(record, Watermark):
                assert out.broadcast
                marks.append(record)
            else:
                assert isinstance(record, Partial)
                partials += 1
                closed_until = max(closed_until, record.bucket_end_ms)
        # a bucket's partial goes out with the watermark record that says it is complete
        assert not marks or marks[-1].watermark_ms >= closed_until
    # the watermark moved with every batch, but stage 2 only learns of each bucket it completes
    buckets = [m.watermark_ms // BUCKET_MS for m in marks]
    assert batches == 60 and partials >= 9
    assert buckets == sorted(set(buckets))  # one record per bucket boundary, in order
    assert len(marks) == len(set(buckets)) <= 11


def test_process_returns_the_late_and_future_events_of_the_batch_per_model() -> None:
    core = make_core(allowed_lateness_ms=0)
    first = events((1_000, "churn", "eu"), (125_000, "churn", "eu"))
    counts = core.process(0, first, offsets(first), now_ms=130_000)
    assert (dict(counts.late), dict(counts.future), counts.replayed) == ({}, {}, 0)
    # buckets [0, 60 s) and [60 s, 120 s) are closed; 10 min ahead of the wall clock is future
    second = events(
        (30_000, "churn", "eu"),
        (40_000, "churn", "us"),
        (50_000, "fraud", "eu"),
        (130_000, "fraud", "eu"),
        (900_000, "fraud", "eu"),
    )
    counts = core.process(0, second, offsets(second, 2), now_ms=130_000)
    assert dict(counts.late) == {"churn": 2, "fraud": 1}
    assert dict(counts.future) == {"fraud": 1}
    empty = core.process(0, events(), offsets(events()), now_ms=130_000)
    assert (dict(empty.late), dict(empty.future), empty.replayed) == ({}, {}, 0)


def test_process_counts_the_events_replayed_from_emitted_buckets() -> None:
    core = make_core(allowed_lateness_ms=0)
    core.assign(0, Resume(offset=0, watermark_ms=2 * BUCKET_MS, emitted_through=2))
    batch = events(*[(ms, "churn", "eu") for ms in (1_000, 2_000, 61_000, 130_000)])
    counts = core.process(0, batch, offsets(batch), None)
    assert counts.replayed == 3  # offsets 0-2 were in emitted buckets; 130 s is new
    assert (dict(counts.late), dict(counts.future)) == ({}, {})


def test_emissions_carry_the_cardinality_overflow_once() -> None:
    core = make_core(limits=ProfilerLimits(max_segments=1))
    batch = events(*[(1_000 + i, "churn", region) for i, region in enumerate("aabbbc")])
    core.process(0, batch, offsets(batch), None)
    assert core.flush(7).overflow == {}  # a partition it does not own: nothing to say
    assert dict(core.due(None).overflow) == {"segments": 4}  # b, b, b, c: past the cap
    assert dict(core.due(None).overflow) == {}  # told once
    more = events((2_000, "churn", "d"), (3_000, "churn", "a"))
    core.process(0, more, offsets(more, 6), None)
    emission = core.flush(0)
    assert dict(emission.overflow) == {"segments": 1}
    partials = [decode_record(r.value) for r in emission.records]
    assert [p.model for p in partials if isinstance(p, Partial)] == ["churn"]


def test_an_idle_partition_sends_the_bucket_of_its_newest_event_before_its_watermark() -> None:
    core = make_core()
    t0 = 1_767_225_600_000
    batch = events((t0 + 10_000, "churn", "eu"), (t0 + 70_000, "churn", "eu"))  # buckets 0, 1
    core.process(0, batch, offsets(batch), t0 + 70_000)
    core.note_position(0, 2, 2)  # caught up with the partition's end
    before = [decode_record(r.value) for r in core.due(t0 + 71_000).records]
    assert [p.bucket_start_ms for p in before if isinstance(p, Partial)] == [t0]
    records = [decode_record(r.value) for r in core.due(t0 + 70_000 + 30_000).records]
    partials = [r for r in records if isinstance(r, Partial)]
    marks = [r for r in records if isinstance(r, Watermark)]
    # both buckets, the newest event's too, and then an idle watermark at that bucket's end
    assert [p.bucket_start_ms for p in partials] == [t0 + BUCKET_MS]
    assert records.index(marks[-1]) > records.index(partials[-1])
    assert marks[-1].idle and marks[-1].watermark_ms == t0 + 2 * BUCKET_MS


def test_a_future_stamped_event_then_idleness_closes_no_bucket_ahead_of_the_wall_clock() -> None:
    """An event 3 minutes ahead (inside max_future) and then silence: the idle partition
    closes the buckets up to the wall clock's, and its watermark follows the wall clock; an
    event arriving a minute later for the next minute is on time, not late."""
    core = make_core()
    t0 = 1_767_225_600_000
    now = t0 + 10_000
    batch = events((t0 + 5_000, "churn", "eu"), (t0 + 3 * BUCKET_MS + 5_000, "churn", "eu"))
    core.process(0, batch, offsets(batch), now)
    core.note_position(0, 2, 2)
    records = [decode_record(r.value) for r in core.due(now + 30_000).records]
    marks = [r for r in records if isinstance(r, Watermark)]
    assert marks and marks[-1].idle and marks[-1].watermark_ms == t0 + BUCKET_MS
    assert [r.bucket_start_ms for r in records if isinstance(r, Partial)] == [t0]
    # a minute later the wall clock is in the next bucket: the watermark follows it
    records = [decode_record(r.value) for r in core.due(t0 + BUCKET_MS + 20_000).records]
    marks = [r for r in records if isinstance(r, Watermark)]
    assert marks and marks[-1].watermark_ms == t0 + 2 * BUCKET_MS
    # an event of the third minute, sent on time, is folded, not late
    later = events((t0 + 2 * BUCKET_MS + 1_000, "churn", "eu"))
    counts = core.process(0, later, offsets(later, 2), t0 + 2 * BUCKET_MS + 2_000)
    assert not counts.late
    core.note_position(0, 3, 3)
    records = [decode_record(r.value) for r in core.due(t0 + 4 * BUCKET_MS).records]
    partials = sorted(r.bucket_start_ms for r in records if isinstance(r, Partial))
    assert partials == [t0 + 2 * BUCKET_MS, t0 + 3 * BUCKET_MS]


def test_an_idle_partition_with_events_again_says_so_before_another_partitions_partials() -> None:
    """Both partitions idle (as after a pause of the input, or a broker outage), then events
    for both: partition 1's are read first. Stage 2 does not wait for an idle partition, so
    partition 0 must be reported active before partition 1's partials and watermark, with the
    watermark it was idle at (not a newer one), or stage 2 evaluates the next buckets without
    it and sets its partials aside as late (fault test (b) lost them so)."""
    core = make_core(partitions=2)
    core.assign(1, None)
    t0 = 1_767_225_600_000
    for p in (0, 1):
        batch = events((t0 + 10_000, "churn", "eu"))
        core.process(p, batch, offsets(batch), t0 + 10_000)
        core.note_position(p, 1, 1)
    idle = [decode_record(r.value) for r in core.due(t0 + 45_000).records]
    assert {(m.partition, m.idle) for m in idle if isinstance(m, Watermark)} == {
        (0, True),
        (1, True),
    }
    # new events on both partitions; the batch holds partition 1's only (minutes 1 to 4)
    later = events(*((t0 + m * BUCKET_MS + 1_000, "churn", "eu") for m in range(1, 5)))
    core.process(1, later, offsets(later, 1), t0 + 5 * BUCKET_MS)
    core.note_position(1, 5, 5)
    core.note_position(0, 1, 5)  # partition 0 has 4 events to read
    out = core.due(t0 + 5 * BUCKET_MS).records
    # both were reported idle and have events again: both say so first, as barriers
    assert [r.barrier for r in out] == [True, True] + [False] * (len(out) - 2)
    records = [decode_record(r.value) for r in out]
    first = records[0]
    assert isinstance(first, Watermark) and (first.partition, first.idle) == (0, False)
    assert first.watermark_ms == t0 + BUCKET_MS  # where it was idle: nothing newer is closed
    assert any(isinstance(r, Partial) and r.partition == 1 for r in records[1:])
    # its events, read next, close its buckets: partials before its newer watermark
    core.process(0, later, offsets(later, 1), t0 + 5 * BUCKET_MS + 1_000)
    core.note_position(0, 5, 5)
    records = [decode_record(r.value) for r in core.due(t0 + 5 * BUCKET_MS + 1_000).records]
    mine = [r for r in records if r.partition == 0]
    assert isinstance(mine[0], Partial) and isinstance(mine[-1], Watermark)
    assert not mine[-1].idle and mine[-1].watermark_ms > t0 + BUCKET_MS


def test_a_resumed_partition_is_reported_active_before_anything_else() -> None:
    """The previous owner may have reported the partition idle (stage 2 then does not wait
    for it): its new owner says it is active first, at the watermark it resumes from, ahead
    of the partials of the partitions it reads first (as after a broker restart, where the
    consumer can read one partition before it knows the other's end)."""
    core = make_core(partitions=2)
    t0 = 1_767_225_600_000
    core.assign(0, Resume(1, t0 + BUCKET_MS, 0))
    core.assign(1, Resume(1, t0 + BUCKET_MS, 0))
    later = events(*((t0 + m * BUCKET_MS + 1_000, "churn", "eu") for m in range(1, 5)))
    core.process(0, later, offsets(later, 1), t0 + 5 * BUCKET_MS)
    core.note_position(0, 5, 5)
    out = core.due(t0 + 5 * BUCKET_MS).records
    # barriers: with a producer per input partition, the order of sends alone would not put
    # partition 1's watermark (its producer) before partition 0's partials (another producer)
    assert [r.barrier for r in out] == [True, True] + [False] * (len(out) - 2)
    records = [decode_record(r.value) for r in out]
    head = records[:2]
    assert all(isinstance(m, Watermark) and not m.idle for m in head), head
    assert {m.partition for m in head} == {0, 1}
    assert all(m.watermark_ms == t0 + BUCKET_MS for m in head)
    assert any(isinstance(r, Partial) and r.partition == 0 for r in records[2:])
    # said once
    again = [decode_record(r.value) for r in core.due(t0 + 5 * BUCKET_MS).records]
    assert not [m for m in again if isinstance(m, Watermark) and m.partition == 1]
