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
