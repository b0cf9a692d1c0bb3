"""What the detector reports as changed, and its snapshot: the inputs of stage 2's state writes."""

from __future__ import annotations

from itertools import islice
from typing import Any

import orjson

from driftwire.alerts.alert import Alert
from driftwire.detect._parts import bucket_key, frozen_key, parse_part_key, pending_key
from driftwire.detect.detector import Detector
from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.detect.trailing import decode_slot, is_slot_key
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.partials import Partial, Watermark, decode_record
from driftwire.profiling.partitions import OutRecord
from driftwire.stages.inmemory import InMemoryPipeline

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


def _named_parts(detector: Detector) -> list[bytes]:
    """Keys of the window buckets and frozen references the state names (the keys of the
    latency's slots are asked for over the reference's whole reach, stored or not)."""
    return [key for key in detector.part_keys("churn") if not is_slot_key(key)]


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


def test_snapshot_and_stored_parts_restore_the_same_state_and_alerts() -> None:
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
    stored = {key: blob for _, key, blob in first.detector.stored_parts() if blob is not None}
    state = first.detector.snapshot("churn")
    # the window's buckets and the frozen reference are stored apart, once: only named here
    version = next(iter(state["versions"].values()))
    assert version["buckets"] and all(isinstance(b, int) for b in version["buckets"])
    assert version["frozen_id"] and "frozen" not in version
    assert len(orjson.dumps(state)) < sum(map(len, stored.values()))
    restored = _fresh(settings)
    restored.restore("churn", orjson.loads(orjson.dumps(state)))
    keys = _named_parts(restored)
    assert keys and set(keys) <= set(stored)
    for key in keys:
        restored.load_part(key, stored[key])
    assert _named_parts(restored) == []  # nothing left to load
    assert orjson.dumps(restored.snapshot("churn")) == orjson.dumps(state)
    assert restored.stored_parts() == []  # loaded parts are not stored again

    second = InMemoryPipeline(settings, batch_size=500)
    second.detector = restored
    # stage 1 replays the first half (same offsets, so the same partial ids): the restored
    # detector drops what it already merged and announces nothing twice
    for i in range(0, half, 500):
        assert second.feed(values[i : i + 500]) == []
    after = [a.fingerprint + a.status for a in second.run(values[half:])]
    assert after and before + after == expected


def test_a_snapshot_with_inline_parts_is_still_read_and_its_parts_are_stored() -> None:
    """The earlier layout held the window's buckets (hex) and the frozen reference inline."""
    settings = _settings()
    pipeline = InMemoryPipeline(settings, batch_size=500, partitions=3)
    values = list(generate(_stream()))
    for n, batch in enumerate(range(0, 6_000, 500)):  # a bucket waits for other partitions
        pipeline.feed(values[batch : batch + 500], partition=n % 3)
    stored = {k: b for _, k, b in pipeline.detector.stored_parts() if b is not None}
    state = orjson.loads(orjson.dumps(pipeline.detector.snapshot("churn")))
    old = orjson.loads(orjson.dumps(state))
    for name, version in old["versions"].items():
        buckets = {}
        for b in version["buckets"]:
            _, _, profiles = decode_slot(stored[bucket_key("churn", name, b)])
            buckets[str(b)] = {s: p.to_bytes().hex() for s, p in profiles.items()}
        version["buckets"] = buckets
        frozen = Reference.from_bytes(stored[frozen_key("churn", name)])
        version["frozen"] = frozen.to_state()
        del version["frozen_id"]
        pending = {}
        for b, gen in version["pending"].items():
            _, _, profiles = decode_slot(stored[pending_key("churn", name, int(b), gen)])
            pending[b] = {s: p.to_bytes().hex() for s, p in profiles.items()}
        version["pending"] = pending
    assert any(v["pending"] for v in old["versions"].values())
    restored = _fresh(settings)
    restored.restore("churn", old)
    assert _named_parts(restored) == []
    again = {k: b for _, k, b in restored.stored_parts()}
    assert again == stored  # now stored apart, so the next restart finds them
    assert orjson.dumps(restored.snapshot("churn")) == orjson.dumps(state)


def test_an_incident_keeps_its_members_across_a_restart_and_older_snapshots_still_load() -> None:
    start = StreamSpec(events=1).start_ms
    four = [Change(f, start + 30 * MINUTE, 2.0) for f in ("age", "income", "tenure_days")]
    later = Change("sessions_7d", start + 40 * MINUTE, 2.0)
    spec = StreamSpec(
        events=12_000, seed=5, events_per_second=12_000 / 3000, numeric_features=4,
        categorical_features=1, regions=("eu", "us"), tiers=("gold",), changes=(*four, later),
    )  # fmt: skip
    settings = Settings.model_validate(
        {"detect": {"window_buckets": 5, "min_count": 200, "min_reference_count": 400}}
    )
    values = list(generate(spec))
    cut = 36 * len(values) // 50  # the incident fires at minute 32, the late member joins at 42

    def incident(alerts: list[Alert]) -> list[tuple[str, tuple[str, ...]]]:
        return [
            (a.status, tuple(sorted({m["feature"] for m in a.evidence["members"]})))
            for a in alerts
            if a.kind == "upstream_change"
        ]

    whole = incident(InMemoryPipeline(settings, batch_size=500).run(values))
    assert whole == [
        ("firing", ("age", "income", "tenure_days")),
        ("firing", ("age", "income", "sessions_7d", "tenure_days")),  # re-sent: it joined
    ]
    for drop in (False, True):
        first = InMemoryPipeline(settings, batch_size=500)
        before = incident(first.feed(values[:cut]))
        assert [status for status, _ in before] == ["firing"]
        stored = {key: blob for _, key, blob in first.detector.stored_parts() if blob is not None}
        state = orjson.loads(orjson.dumps(first.detector.snapshot("churn")))
        assert state["incidents"]
        if drop:
            del state["incidents"]  # a snapshot of the earlier format
        restored = _fresh(settings)
        restored.restore("churn", state)
        for key in _named_parts(restored):
            restored.load_part(key, stored[key])
        second = InMemoryPipeline(settings, batch_size=500)
        second.detector = restored
        assert before + incident(second.run(values[cut:])) == whole


class _Recording(InMemoryPipeline):
    """Keeps the partials it delivers (to rewrite a snapshot in the earlier layout)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, batch_size=500)
        self.partials: list[Partial] = []

    def _deliver(self, outputs: list[OutRecord]) -> list[Alert]:
        self.partials += [
            r for r in (decode_record(o.value) for o in outputs) if isinstance(r, Partial)
        ]
        return super()._deliver(outputs)


def test_a_snapshot_with_earlier_partial_ids_and_no_spans_still_drops_a_replay() -> None:
    """Snapshots written before the offset spans hold ids that hashed the last offset too;
    a replay of those partials after the upgrade is still recognised and not merged."""
    settings = _settings()
    values = list(generate(_stream()))
    half = len(values) // 2
    first = _Recording(settings)
    for i in range(0, half, 500):
        first.feed(values[i : i + 500])
    stored = {key: blob for _, key, blob in first.detector.stored_parts() if blob is not None}
    state = orjson.loads(orjson.dumps(first.detector.snapshot("churn")))
    assert state["spans"]
    legacy = {p.id: p.legacy_id for p in first.partials}
    old = {**state, "seen_ids": {legacy[k]: v for k, v in state["seen_ids"].items()}}
    del old["spans"]
    restored = _fresh(settings)
    restored.restore("churn", old)
    for key in _named_parts(restored):
        restored.load_part(key, stored[key])
    traffic = dict(restored.snapshot("churn")["traffic"])
    replay = InMemoryPipeline(settings, batch_size=500)
    replay.detector = restored
    for i in range(0, half, 500):
        assert replay.feed(values[i : i + 500]) == []
    assert restored.snapshot("churn")["traffic"] == traffic


def _pending_bytes(detector: Detector) -> dict[tuple[str, int], dict[str, bytes]]:
    model = detector._models.get("churn")  # noqa: SLF001 (what the stored state must hold)
    if model is None:
        return {}
    return {
        (v, b): {s: p.to_bytes() for s, p in segs.items()}
        for v, state in model.versions.items()
        for b, segs in state.pending.items()
    }


def _restored_pending(
    snapshot: dict[str, Any], store: dict[bytes, bytes]
) -> dict[tuple[str, int], dict[str, bytes]]:
    """A fresh detector restored from ``snapshot`` and the parts it names in ``store``."""
    restored = _fresh(_settings())
    restored.restore("churn", orjson.loads(orjson.dumps(snapshot)))
    for key in _named_parts(restored):
        if parse_part_key(key)[0] == "pending":
            restored.load_part(key, store[key])  # every generation it names is there
        elif key in store:  # a bucket that left the window since is deleted at once
            restored.load_part(key, store[key])
    return _pending_bytes(restored)


def test_pending_buckets_are_stored_apart_by_generation_and_survive_a_stop_anywhere() -> None:
    """Each partial merged stores its pending bucket as a new generation; the snapshot names
    it. With three input partitions each bucket gets a partial from each. After every record
    the stored state restores the pending profiles exactly, and so does the previous snapshot
    with what is stored once the next parts are written but not yet that snapshot (a worker
    stopped between the two); generations no snapshot names are deleted one drain later."""
    pipeline = InMemoryPipeline(_settings(), batch_size=250, partitions=3)
    detector = pipeline.detector
    values = list(generate(_stream()))
    store: dict[bytes, bytes] = {}
    previous: tuple[dict[str, Any], dict[tuple[str, int], dict[str, bytes]]] | None = None
    merged_again = 0
    for n, i in enumerate(range(0, len(values), 250)):
        pipeline.feed(values[i : i + 250], partition=n % 3)
        for _, key, blob in detector.stored_parts():
            if blob is None:
                del store[key]  # only what was stored is deleted
            else:
                store[key] = blob
        if previous is not None:  # stopped here: the last snapshot and its parts still hold
            assert _restored_pending(previous[0], store) == previous[1]
        snapshot = detector.snapshot("churn")
        if not snapshot:
            continue
        now = _pending_bytes(detector)
        assert _restored_pending(snapshot, store) == now
        named = {
            pending_key("churn", v, int(b), gen)
            for snap in (snapshot, previous[0] if previous else snapshot)
            for v, version in snap["versions"].items()
            for b, gen in version["pending"].items()
        }
        assert {k for k in store if parse_part_key(k)[0] == "pending"} <= named
        if previous is not None:
            merged_again += sum(
                1 for key, profiles in now.items() if previous[1].get(key) not in (None, profiles)
            )
        previous = (orjson.loads(orjson.dumps(snapshot)), now)
    assert merged_again >= 5
    # the snapshot itself holds no profile: a few hundred bytes per pending bucket at most
    assert len(orjson.dumps(detector.snapshot("churn"))) < 20_000
