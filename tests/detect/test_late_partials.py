"""Partials for a bucket already evaluated are not merged, and the detector reports them so
that the shell exports them (``driftwire_detect_late_partials_total``)."""

from __future__ import annotations

from dataclasses import replace

from driftwire.offline.generator import StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.partials import Partial, decode_record
from driftwire.profiling.partitions import OutRecord
from driftwire.stages.inmemory import InMemoryPipeline


class _Capturing(InMemoryPipeline):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.partials: list[Partial] = []

    def _deliver(self, outputs: list[OutRecord]) -> list:  # type: ignore[type-arg]
        for out in outputs:
            record = decode_record(out.value)
            if isinstance(record, Partial):
                self.partials.append(record)
        return super()._deliver(outputs)


def test_a_partial_for_an_evaluated_bucket_is_counted_once_per_arrival() -> None:
    pipeline = _Capturing(Settings())
    list(pipeline.run(generate(StreamSpec(events=3000, seed=1, events_per_second=5.0))))
    detector = pipeline.detector
    detector.take_late_partials()  # whatever the stream itself had
    first = pipeline.partials[0]
    # the first bucket again, as if from other input partitions (new ids): late, not merged
    assert detector.on_partial(replace(first, partition=1), 0) == []
    assert detector.on_partial(replace(first, partition=2), 0) == []
    assert detector.take_late_partials() == {first.model: 2}
    assert detector.take_late_partials() == {}


def test_a_replay_that_closed_its_bucket_at_another_offset_is_not_merged_again() -> None:
    """A replay cut into other batches, or closed by the wall clock at another point, starts at
    the same offset with another last offset: dropped whole (its events are in the first)."""
    pipeline = _Capturing(Settings())
    list(pipeline.run(generate(StreamSpec(events=600, seed=1, events_per_second=0.5))))
    detector = pipeline.detector
    last = pipeline.partials[-1]
    before = detector.snapshot(last.model)["traffic"]
    for shape in (
        replace(last, last_offset=last.last_offset + 7, events=last.events + 7),
        replace(last, last_offset=last.last_offset - 1, events=last.events - 1),
        replace(last, first_offset=last.first_offset + 1),
    ):
        assert detector.on_partial(shape, 0) == []
    assert detector.snapshot(last.model)["traffic"] == before
    assert detector.take_late_partials() == {}
    # the bucket going on after the merged span (a flush on revoke, then the next owner)
    after = replace(last, first_offset=last.last_offset + 1, last_offset=last.last_offset + 9)
    detector.on_partial(after, 0)
    start = str(last.bucket_start_ms)
    assert detector.snapshot(last.model)["traffic"][start] == before[start] + after.events
