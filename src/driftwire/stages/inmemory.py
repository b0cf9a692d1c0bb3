"""The in-memory transport: both stages in one process without a broker.

The same cores as on Kafka (decoder, :class:`~driftwire.profiling.partitions.ProfileCore`,
:class:`~driftwire.detect.detector.Detector`), with the partials encoded and decoded exactly as on
the partials topic. Used by ``driftwire demo`` and ``driftwire replay`` and by the fast unit
tests of the pipeline logic. Event time drives everything; the stream's end closes every
open bucket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from prometheus_client import CollectorRegistry

from driftwire.alerts.alert import Alert
from driftwire.decode.batch import Rejection
from driftwire.decode.decoder import decode_batch
from driftwire.decode.limits import DecoderLimits
from driftwire.detect.baseline_match import BaselineNotice
from driftwire.detect.detector import Detector, Evaluation
from driftwire.detect.intake import EvaluationFailure
from driftwire.detect.reference import ReferenceStore, SmallReference
from driftwire.ops.config import Settings
from driftwire.ops.metrics import Metrics
from driftwire.partials import Partial, Watermark, decode_record
from driftwire.profiling.partitions import OutRecord
from driftwire.stages.profile_core import count_emitted, count_folded, profile_core

PARTITION = 0


@dataclass
class PipelineStats:
    events_valid: int = 0
    events_invalid: int = 0
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    partials: int = 0
    windows_evaluated: int = 0
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)
    small_references: list[SmallReference] = field(default_factory=list)  # each reported once
    #: evaluations that raised (the bucket was skipped, the other models went on)
    evaluation_failures: list[EvaluationFailure] = field(default_factory=list)
    # baselines matching no model, models frozen while similar names have one (each once)
    baseline_notices: list[BaselineNotice] = field(default_factory=list)


class InMemoryPipeline:
    """Feed raw event values, get alerts. ``partitions`` input partitions (one by default),
    each with its own event clock as on Kafka; offsets counted from 0 per partition.
    ``keep_state_parts=False`` for a long replay: see ``__init__``."""

    def __init__(
        self,
        settings: Settings,
        references: ReferenceStore | None = None,
        *,
        batch_size: int = 2000,
        topic: str = "in-memory",
        registry: CollectorRegistry | None = None,
        on_evaluation: Callable[[Evaluation], None] | None = None,
        partitions: int = 1,
        keep_state_parts: bool = True,
    ) -> None:
        self.settings = settings
        # what the Kafka stage stores apart from its snapshots (window buckets, frozen
        # references, reference slots): kept for tests of restarts to take
        # (``detector.stored_parts()``), else forgotten after every batch, as a long replay needs
        self._keep_state_parts = keep_state_parts
        self.metrics = Metrics(registry or CollectorRegistry())
        self.references = references or ReferenceStore()
        self.stats = PipelineStats()
        self._batch_size = batch_size
        self._limits = DecoderLimits(
            max_event_bytes=settings.profile.max_event_bytes,
            max_features=settings.profile.max_features,
        )
        self.core = profile_core(settings, topic=topic, partitions=partitions)
        self.detector = Detector(
            settings.detect,
            settings.alerts,
            self.references,
            bucket_ms=int(settings.profile.bucket_seconds * 1000),
            on_evaluation=self._evaluated,
        )
        self._on_evaluation = on_evaluation
        self._offsets = dict.fromkeys(range(partitions), 0)
        for partition in self._offsets:
            self.core.assign(partition, None)

    def _evaluated(self, evaluation: Evaluation) -> None:
        self.stats.windows_evaluated += 1
        if self._on_evaluation is not None:
            self._on_evaluation(evaluation)

    def feed(self, values: list[bytes], partition: int = PARTITION) -> list[Alert]:
        """Process one batch of raw values of ``partition`` (as one ``getmany`` returns)."""
        batch = decode_batch(values, self._limits)
        start = self._offsets[partition]
        self.stats.events_valid += len(batch)
        for rejection in batch.rejections:
            self.stats.events_invalid += 1
            self.stats.invalid_by_reason[rejection.reason] += 1
            self.stats.rejections.append((start + rejection.index, rejection))
        offsets = np.arange(start, start + len(values), dtype=np.int64)
        count_folded(self.metrics, self.core.process(partition, batch, offsets[batch.index], None))
        self._offsets[partition] = start + len(values)
        self.core.note_position(partition, self._offsets[partition])
        return self._deliver(count_emitted(self.metrics, self.core.due(None)))

    def finish(self) -> list[Alert]:
        """End of stream: close every open bucket and evaluate it."""
        outputs: list[OutRecord] = []
        for partition in self._offsets:
            outputs += count_emitted(self.metrics, self.core.flush(partition))
        ends = [self.core.max_event_time(p) for p in self._offsets]
        alerts = self._deliver(outputs)
        known = [e for e in ends if e is not None]
        if known:  # the stream ended: every partition has passed its last event
            for partition in self._offsets:
                mark = Watermark(
                    self.core.topic, partition, len(self._offsets), max(known) + 1, idle=False
                )
                alerts += self.detector.on_watermark(mark, 0)
        self.stats.evaluation_failures += self.detector.take_failures()
        self.detector.check_baselines(final=True)
        self.stats.baseline_notices += self.detector.take_baseline_notices()
        return alerts

    def run(self, values: Iterable[bytes]) -> Iterator[Alert]:
        it = iter(values)
        while chunk := list(islice(it, self._batch_size)):
            yield from self.feed(chunk)
        yield from self.finish()

    def _deliver(self, outputs: list[OutRecord]) -> list[Alert]:
        alerts: list[Alert] = []
        for out in outputs:
            record = decode_record(out.value)
            if isinstance(record, Partial):
                self.stats.partials += 1
                alerts += self.detector.on_partial(record, 0)
            else:
                alerts += self.detector.on_watermark(record, 0)
        self.stats.small_references += self.detector.take_small_references()
        self.stats.evaluation_failures += self.detector.take_failures()
        self.detector.check_baselines()
        self.stats.baseline_notices += self.detector.take_baseline_notices()
        if not self._keep_state_parts:
            self.detector.discard_stored_parts()
        return alerts
