"""Stage 1's pure core: what it hands to the partials topic, batch by batch."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from driftwire.decode.decoder import DecoderLimits, decode_batch
from driftwire.offline.generator import StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.ops.metrics import Metrics
from driftwire.partials import Partial, Watermark, decode_record
from driftwire.profiling.partitions import ProfileCore

BUCKET_MS = 60_000


def test_one_watermark_record_per_bucket_boundary_not_per_batch() -> None:
    settings = Settings.model_validate(
        {"profile": {"bucket_seconds": 60, "allowed_lateness_seconds": 5}}
    )
    core = ProfileCore.from_settings(settings, Metrics(CollectorRegistry()), partitions=1)
    core.assign(0, None)
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
        for out in core.due(None):
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
