"""What the detector reports as changed, and its snapshot: the inputs of stage 2's state writes."""

from __future__ import annotations

from itertools import islice

import orjson

from driftwire.config import Settings
from driftwire.detector import Detector
from driftwire.generator import Change, StreamSpec, generate
from driftwire.memory import InMemoryPipeline
from driftwire.partials import Watermark
from driftwire.reference import ReferenceStore

MINUTE = 60_000


def _settings() -> Settings:
    return Settings.model_validate(
        {"detect": {"window_buckets": 3, "min_count": 100, "min_reference_count": 200}}
    )


def _stream() -> StreamSpec:
    start = StreamSpec(events=1).start_ms
    shift = Change("income", start + 8 * MINUTE, 4.0)
    return StreamSpec(events=12_000, seed=5, events_per_second=12_000 / 720, changes=(shift,))


def _fresh(settings: Settings) -> Detector:
    return Detector(settings.detect, settings.alerts, ReferenceStore(), bucket_ms=MINUTE)


def test_partials_and_evaluations_change_a_model_and_bare_watermarks_do_not() -> None:
    pipeline = InMemoryPipeline(_settings(), batch_size=500)
    detector = pipeline.detector
    events = iter(generate(_stream()))
    seen_changed = False
    for _ in range(10):
        pipeline.feed(list(islice(events, 500)))
        seen_changed |= "churn" in detector.take_changed()
    assert seen_changed
    assert detector.take_changed() == set()  # taken: nothing until the next change
    snapshot = detector.snapshot("churn")
    # a watermark that completes no new bucket leaves the model's state as it was
    until = snapshot["evaluated_until"]
    mark = Watermark("in-memory", 0, 1, until, idle=False)
    assert detector.on_watermark(mark, 0) == []
    assert detector.take_changed() == set()
    assert orjson.dumps(detector.snapshot("churn")) == orjson.dumps(snapshot)
    # one that completes the open bucket evaluates it: a change
    later = Watermark("in-memory", 0, 1, until + 10 * MINUTE, idle=False)
    detector.on_watermark(later, 0)
    assert detector.take_changed() == {"churn"}
    assert detector.snapshot("churn")["evaluated_until"] > until


def test_snapshot_encoded_once_equals_a_fresh_encoding_and_restores_the_same_alerts() -> None:
    settings = _settings()
    values = list(generate(_stream()))
    half = len(values) // 2
    whole = InMemoryPipeline(settings, batch_size=500)
    expected = [a.fingerprint + a.status for a in whole.run(values)]
    assert any(e.endswith("firing") for e in expected[len(expected) // 2 :])

    first = InMemoryPipeline(settings, batch_size=500)
    before: list[str] = []
    for i in range(0, half, 500):
        before += [a.fingerprint + a.status for a in first.feed(values[i : i + 500])]
    state = first.detector.snapshot("churn")
    again = first.detector.snapshot("churn")  # served from the per-bucket cache
    restored = _fresh(settings)
    restored.restore("churn", orjson.loads(orjson.dumps(state)))
    assert orjson.dumps(restored.snapshot("churn")) == orjson.dumps(state) == orjson.dumps(again)

    second = InMemoryPipeline(settings, batch_size=500)
    second.detector = restored
    # stage 1 replays the first half (same offsets, so the same partial ids): the restored
    # detector drops what it already merged and announces nothing twice
    for i in range(0, half, 500):
        assert second.feed(values[i : i + 500]) == []
    after = [a.fingerprint + a.status for a in second.run(values[half:])]
    assert after and before + after == expected
