"""Trailing and seasonal references (driftwire.detect.trailing): slots, fallback, overrides,
restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from scenarios import VALIDATOR

from driftwire.alerts.alert import Alert, encode
from driftwire.detect.detector import Detector
from driftwire.detect.reference import Reference
from driftwire.detect.trailing import History, decode_slot, parse_slot_key, read_slot, slot_key
from driftwire.errors import ConfigError
from driftwire.offline.generator import Change, StreamSpec, daily_pattern, generate
from driftwire.ops.config import Settings, load_settings
from driftwire.sketch.profile import Profile
from driftwire.stages.inmemory import InMemoryPipeline

H = 3_600_000
DAY = 24 * H
BUCKET = 600_000
START = StreamSpec(events=1).start_ms
SHIFT = START + 2 * DAY + 10 * H  # a real change on day 3, 10:00-13:00, on top of the pattern


def settings(latency: str = "references", **references: Any) -> Settings:
    """10-minute buckets, 30-minute windows, hourly slots, a daily period of 2 days; latency
    follows ``detect.references`` unless ``latency`` names its own reference."""
    refs = {"seasonal_period": "day", "seasonal_periods": 2, **references}
    return Settings.model_validate(
        {
            "profile": {"bucket_seconds": BUCKET / 1000},
            "detect": {
                "window_buckets": 3,
                "min_count": 150,
                "min_reference_count": 300,
                "segments": False,
                "references": refs,
                "latency": {"reference": latency},
            },
        }
    )


def stream(days: int, *changes: Change, per_hour: int = 600, seed: int = 3) -> list[bytes]:
    spec = StreamSpec(
        events=days * 24 * per_hour,
        seed=seed,
        events_per_second=per_hour / 3600,
        numeric_features=2,
        categorical_features=1,
        regions=("eu",),
        tiers=("gold",),
        changes=changes,
    )
    return list(generate(spec))


def run(values: list[bytes], **references: Any) -> list[Alert]:
    alerts = list(InMemoryPipeline(settings(**references)).run(values))
    for alert in alerts:
        VALIDATOR.validate(orjson.loads(encode(alert, "driftwire-test")[1]))
    return alerts


def firing(alerts: list[Alert], feature: str, after: int = 0, before: int = 2**62) -> list[Alert]:
    return [
        a
        for a in alerts
        if a.status == "firing"
        and a.kind == "data_drift"
        and a.labels.get("feature") == feature
        and after <= a.evaluated_at_ms < before
    ]


def firing_during(alerts: list[Alert], feature: str, after: int, before: int) -> bool:
    """Whether a drift alert of ``feature`` was firing at some time in ``[after, before)``.

    A condition that keeps breaching fires once and holds (hysteresis), so this looks at the
    span from each firing to its resolution, not at emissions alone.
    """
    since: dict[str, int] = {}
    for a in sorted(alerts, key=lambda a: a.evaluated_at_ms):
        if a.kind != "data_drift" or a.labels.get("feature") != feature:
            continue
        if a.status == "firing":
            since.setdefault(a.fingerprint, a.evaluated_at_ms)
        elif a.fingerprint in since:
            start = since.pop(a.fingerprint)
            if start < before and a.evaluated_at_ms > after:
                return True
    return any(start < before for start in since.values())


@pytest.fixture(scope="module")
def daily() -> list[bytes]:
    """3 days: age and income follow the hour of the day; age shifts on day 3, 10:00-13:00."""
    pattern = daily_pattern("age", 1.5, START, 3) + daily_pattern("income", 1.5, START, 3)
    return stream(3, *pattern, Change("age", SHIFT, 1.5, end_ms=SHIFT + 3 * H))


# -- end to end through the in-memory pipeline ------------------------------------------------


def test_daily_pattern_fires_against_the_frozen_window(daily: list[bytes]) -> None:
    alerts = run(daily)
    assert firing_during(alerts, "age", START + DAY, SHIFT)
    assert firing_during(alerts, "income", START + DAY, START + 3 * DAY)
    assert {a.reference["kind"] for a in firing(alerts, "age")} == {"frozen_window"}


def test_daily_pattern_is_silent_against_a_seasonal_reference(daily: list[bytes]) -> None:
    alerts = run(daily, default="seasonal")
    # day 1 has no past period: the frozen window stands in, and every alert says why
    early = firing(alerts, "age", 0, START + DAY)
    assert early
    for a in early:
        assert a.reference["kind"] == "frozen_window"
        assert a.reference["note"].startswith("seasonal: 0 of 2 days, 0 events (needs 150)")
    # from day 2 on, the pattern is the reference's too: silent but for the real shift
    assert not firing(alerts, "age", START + DAY + H, SHIFT)
    assert not firing(alerts, "income", START + DAY + H)
    shifted = firing(alerts, "age", SHIFT, SHIFT + 3 * H)
    assert shifted
    ref = shifted[0].reference
    assert ref["kind"] == "seasonal"
    assert ref["note"].startswith("seasonal: 2 of 2 days")
    assert ref["span"]["period"] == "day" and ref["span"]["periods"] == 2
    assert ref["id"].startswith("seasonal:churn/1.4.2@")


def test_per_feature_override_composes_the_reference(daily: list[bytes]) -> None:
    alerts = run(daily, overrides={"churn/age": "seasonal"})
    # the model's frozen window: the pattern fires
    assert firing_during(alerts, "income", START + DAY, START + 3 * DAY)
    assert not firing(alerts, "age", START + DAY + H, SHIFT)  # age: its own seasonal reference
    shifted = firing(alerts, "age", SHIFT, SHIFT + 3 * H)
    assert shifted and shifted[0].reference["kind"] == "seasonal"
    assert {a.reference["kind"] for a in firing(alerts, "income")} == {"frozen_window"}


def test_trailing_window_follows_a_slow_benign_change() -> None:
    # 0.025 sd an hour: 0.6 sd over the day against the frozen first window; against the
    # trailing 3 hours the window is ~0.04 sd away, under the relevant minimum (0.05 sd)
    ramp = tuple(
        Change("age", START + i * H, 0.025 * i, end_ms=START + (i + 1) * H) for i in range(24)
    )
    values = stream(1, *ramp, per_hour=1200)
    frozen = run(values)
    assert firing(frozen, "age")
    trailing = run(values, default="trailing_window", trailing_hours=3)
    assert not firing(trailing, "age")
    quality = [a for a in trailing if a.kind == "data_quality" and a.status == "firing"]
    assert not quality


def test_slot_history_survives_a_restore(daily: list[bytes]) -> None:
    """Snapshot and stored slots are enough to go on; without the slots the pattern fires."""
    cut = next(i for i, v in enumerate(daily) if orjson.loads(v)["timestamp"] >= START + 2 * DAY)
    outcomes = {}
    for keep_slots in (True, False):
        pipeline = InMemoryPipeline(settings(default="seasonal"))
        store: dict[bytes, bytes] = {}
        alerts = pipeline.feed(daily[:cut])
        old = pipeline.detector
        for _, key, blob in old.stored_parts():
            if blob is None:
                store.pop(key, None)
            else:
                store[key] = blob
        state = orjson.loads(orjson.dumps(old.snapshot("churn")))
        assert "slot" not in orjson.dumps(state).decode()  # slot history is not in the snapshot
        new = Detector(
            pipeline.settings.detect,
            pipeline.settings.alerts,
            pipeline.references,
            bucket_ms=BUCKET,
        )
        new.restore("churn", state)
        keys = new.part_keys("churn")
        assert set(store) <= set(keys)  # every stored slot within reach is asked for
        if keep_slots:
            for key in keys:
                if key in store:
                    new.load_part(key, store[key])
        pipeline.detector = new
        alerts = pipeline.feed(daily[cut:]) + pipeline.finish()
        outcomes[keep_slots] = alerts
    assert not firing(outcomes[True], "age", START + 2 * DAY, SHIFT)
    assert firing(outcomes[True], "age", SHIFT, SHIFT + 3 * H)[0].reference["kind"] == "seasonal"
    assert firing(outcomes[False], "age", START + 2 * DAY, SHIFT)


# -- the pure core: slots, merges, cache, fallback ---------------------------------------------


def bucket_profile(start: int, values: np.ndarray, plan: np.ndarray | None = None) -> Profile:
    p = Profile(start_ms=start, end_ms=start + BUCKET)
    rows: list[dict[str, Any]] = [{"age": float(v)} for v in values]
    if plan is not None:
        for row, tier in zip(rows, plan, strict=True):
            row["plan"] = str(tier)
    p.update(rows)
    return p


def fill(history: History, until: int, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Buckets up to ``until``, age = hour of day + noise; raw values by bucket start."""
    raw: dict[int, np.ndarray] = {}
    for b in range(START, until, BUCKET):
        hour = (b - START) % DAY // H
        values = hour + rng.normal(0, 1, int(rng.integers(40, 60)))
        raw[b] = values
        history.add("churn", "1", b, {"": bucket_profile(b, values)})
    return raw


def frozen() -> Reference:
    p = bucket_profile(START, np.zeros(400))
    return Reference("frozen_window", "frozen:x", "churn", "1", {"all": p}, note="Frozen.")


def test_seasonal_reference_is_the_exact_merge_of_the_same_hours() -> None:
    s = settings(default="seasonal")
    history = History(s.detect, bucket_ms=BUCKET)
    day3 = START + 2 * DAY
    start, end = day3 + 10 * H, day3 + 10 * H + 3 * BUCKET
    raw = fill(history, end, np.random.default_rng(1))
    ref = history.choose("churn", "1", frozen(), start, end).reference("all")
    same = [
        v
        for b, v in raw.items()
        if b in range(START + 10 * H, START + 11 * H)
        or b in range(START + DAY + 10 * H, START + DAY + 11 * H)
    ]
    exact = np.concatenate(same)
    age = ref.profile("all").feature("age")
    assert ref.kind == "seasonal"
    assert ref.count == len(exact)
    assert age is not None and age.mean == pytest.approx(exact.mean(), rel=1e-12)
    assert ref.describe()["span"] == {
        "start": "2026-01-01T10:00:00.000Z",
        "end": "2026-01-02T11:00:00.000Z",
        "slots": 2,
        "period": "day",
        "periods": 2,
    }
    # the same slots for the next window: the very same reference, not a rebuild
    later = history.choose("churn", "1", frozen(), start + BUCKET, end + BUCKET)
    assert later.reference("all") is ref
    # a window reaching into 11:00 takes 11:00 of both days too
    straddle = history.choose("churn", "1", frozen(), start + 4 * BUCKET, end + 4 * BUCKET)
    assert straddle.reference("all").describe()["span"]["slots"] == 4


def test_trailing_reference_excludes_the_window_and_counts_exactly() -> None:
    s = settings(default="trailing_window", trailing_hours=2)
    history = History(s.detect, bucket_ms=BUCKET)
    start = START + 10 * H + 2 * BUCKET  # 10:20; window 10:20-10:50
    raw = fill(history, start + 3 * BUCKET, np.random.default_rng(2))
    ref = history.choose("churn", "1", frozen(), start, start + 3 * BUCKET).reference("all")
    exact = np.concatenate([v for b, v in raw.items() if START + 8 * H <= b < START + 10 * H])
    assert ref.kind == "trailing_window" and ref.count == len(exact)
    assert ref.note.startswith("trailing_window: 2 h of 2 h")
    assert ref.describe()["span"]["start"] == "2026-01-01T08:00:00.000Z"


def test_fallback_until_enough_history_says_so() -> None:
    s = settings(default="seasonal")
    history = History(s.detect, bucket_ms=BUCKET)
    fill(history, START + DAY, np.random.default_rng(3))
    fb = frozen()
    # day 2, 10:40-11:10: 10:00 and 11:00 of day 1, ~600 events
    start = START + DAY + 10 * H + 4 * BUCKET
    ref = history.choose("churn", "1", fb, start, start + 3 * BUCKET).reference("all")
    assert ref.kind == "seasonal" and ref.note.startswith("seasonal: 1 of 2 days,")
    none = history.choose("churn", "1", fb, START + 30 * 60_000, START + H)  # no past day
    waiting = none.reference("all")
    assert waiting.kind == "frozen_window" and waiting.id == "frozen:x"
    # the calibrated rule needs a window's minimum (min_count); its test widens for the rest
    assert waiting.note == (
        "seasonal: 0 of 2 days, 0 events (needs 150); until then the frozen window is the "
        "reference. Frozen."
    )
    assert none.profile("all") is fb.profiles["all"]


def test_the_fixed_rule_waits_for_min_reference_count() -> None:
    s = settings(default="seasonal")
    fixed = s.model_copy(update={"detect": s.detect.model_copy(update={"rule": "fixed"})})
    history = History(fixed.detect, bucket_ms=BUCKET)
    fill(history, START + DAY, np.random.default_rng(3))
    waiting = history.choose("churn", "1", frozen(), START + 30 * 60_000, START + H)
    assert waiting.reference("all").note.startswith("seasonal: 0 of 2 days, 0 events (needs 300)")


def test_per_feature_sketches_come_from_their_own_reference() -> None:
    s = settings(overrides={"churn/plan": "seasonal"})
    history = History(s.detect, bucket_ms=BUCKET)
    rng = np.random.default_rng(4)
    for b in range(START, START + DAY + H, BUCKET):
        values = rng.normal(0, 1, 50)
        history.add("churn", "1", b, {"": bucket_profile(b, values, rng.integers(0, 3, 50))})
    fb = frozen()
    choice = history.choose("churn", "1", fb, START + DAY, START + DAY + 3 * BUCKET)
    seasonal = choice.reference("all", "plan")
    assert seasonal.kind == "seasonal"
    assert choice.reference("all", "age") is fb and choice.reference("all") is fb
    composed = choice.profile("all")
    plan, age = composed.feature("plan"), composed.feature("age")
    assert plan is not None and plan.count == seasonal.profile("all").n_events
    assert age is not None and age.count == 400  # the frozen window's


def test_slots_drain_once_and_load_back_by_key() -> None:
    s = settings(default="seasonal")
    history = History(s.detect, bucket_ms=BUCKET)
    fill(history, START + 4 * DAY, np.random.default_rng(5))
    drained = history.drain()
    assert history.drain() == []  # each closed slot is handed out once
    stored = {key: blob for _, key, blob in drained if blob is not None}
    expired = {key for _, key, blob in drained if blob is None}
    # kept: 2 days + the window + a slot before the last close (day 4, 23:00), 21:00 of day 2
    # on; older slots are to be deleted
    assert len(stored) == 2 * 24 + 2
    assert len(expired) == 4 * 24 - 1 - len(stored)
    _, slot_ms, profiles = decode_slot(next(iter(stored.values())))
    assert slot_ms == H and set(profiles) == {"all"}
    again = History(s.detect, bucket_ms=BUCKET)
    keys = again.keys("churn", ["1"], START + 4 * DAY - BUCKET)
    assert set(stored) <= set(keys)
    for key in keys:
        if key in stored:
            again.load(key, stored[key])
    window = (START + 4 * DAY + 10 * H, START + 4 * DAY + 10 * H + 3 * BUCKET)
    old = history.choose("churn", "1", frozen(), *window).reference("all")
    new = again.choose("churn", "1", frozen(), *window).reference("all")
    assert (new.id, new.count, new.note) == (old.id, old.count, old.note)
    assert parse_slot_key(min(stored))[:2] == ("churn", "1")


def test_models_on_baseline_keep_no_slots() -> None:
    history = History(settings(overrides={"other": "seasonal"}).detect, bucket_ms=BUCKET)
    fill(history, START + DAY, np.random.default_rng(6))
    assert history.drain() == [] and history.retention_ms("churn") == 0
    fb = frozen()
    assert history.choose("churn", "1", fb, START, START + H).reference("all") is fb


def latency_fill(history: History, until: int, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Buckets up to ``until`` with an age and a latency each; raw latencies by bucket start."""
    raw: dict[int, np.ndarray] = {}
    for b in range(START, until, BUCKET):
        n = int(rng.integers(40, 60))
        raw[b] = rng.lognormal(np.log(80.0), 0.5, n)
        p = Profile(start_ms=b, end_ms=b + BUCKET)
        p.update([{"age": float(v)} for v in rng.normal(0, 1, n)], latency_ms=raw[b])
        history.add("churn", "1", b, {"": p})
    return raw


def test_latency_alone_keeps_latency_sketches_for_its_own_days() -> None:
    # the defaults of latency (seasonal: the same hour of the last 7 days) with drift on the
    # baseline: the slots hold the latency alone, 7 days back, and the drift keeps the baseline
    s = settings(latency="seasonal")
    assert s.detect.latency_reference("churn") == ("seasonal", "day", 7)
    history = History(s.detect, bucket_ms=BUCKET)
    assert history.retention_ms("churn") == 7 * DAY + 3 * BUCKET + H
    start = START + 8 * DAY + 10 * H  # day 9, 10:00-10:30
    raw = latency_fill(history, start + 3 * BUCKET, np.random.default_rng(7))
    kind, built, progress, parts = history.latency("churn", "1", start, start + 3 * BUCKET)
    days = [START + k * DAY + 10 * H for k in range(1, 8)]
    exact = np.concatenate([v for b, v in raw.items() if any(d <= b < d + H for d in days)])
    assert (kind, progress, len(parts)) == ("seasonal", "7 of 7 days", 7)
    assert built is not None and built.profile("all").latency_ms.count == len(exact)
    assert built.profile("all").feature("age") is None  # no feature sketch kept
    fb = frozen()
    assert history.choose("churn", "1", fb, start, start + 3 * BUCKET).reference("all") is fb
    stored = [blob for _, _, blob in history.drain() if blob is not None]
    # closed: 7 days back from 10:00 of day 9, and the window and a slot more: 08:00 of day 2 on
    assert len(stored) == 7 * 24 + 2
    found_start, slot_ms, profiles, latency_only = read_slot(stored[0])
    assert latency_only and slot_ms == H and profiles["all"].feature("age") is None
    assert profiles["all"].latency_ms.count == profiles["all"].n_events > 0
    # the same slots with every sketch (latency following a seasonal drift reference) are
    # larger; a slot of latency alone cannot serve a drift reference: dropped, deleted
    full = History(settings(default="seasonal", seasonal_periods=7).detect, bucket_ms=BUCKET)
    latency_fill(full, start + 3 * BUCKET, np.random.default_rng(7))
    full_blobs = {key: blob for _, key, blob in full.drain() if blob is not None}
    assert sum(map(len, full_blobs.values())) > 1.5 * sum(map(len, stored))
    again = History(settings(default="seasonal", seasonal_periods=7).detect, bucket_ms=BUCKET)
    key = slot_key("churn", "1", found_start)
    again.load(key, stored[0])
    assert again.drain() == [("churn", key, None)]
    # and a full slot loaded for latency alone keeps its latency only
    alone = History(s.detect, bucket_ms=BUCKET)
    key, blob = next(iter(full_blobs.items()))
    alone.load(key, blob)
    loaded = alone.latency("churn", "1", parse_slot_key(key)[2] + DAY, parse_slot_key(key)[2]
                           + DAY + 3 * BUCKET)[1]  # fmt: skip
    assert loaded is not None and loaded.profile("all").feature("age") is None
    assert loaded.profile("all").latency_ms.count == decode_slot(blob)[2]["all"].n_events


def test_latency_on_the_baseline_keeps_no_slots() -> None:
    s = settings(latency="baseline")
    history = History(s.detect, bucket_ms=BUCKET)
    latency_fill(history, START + DAY, np.random.default_rng(8))
    assert history.drain() == [] and history.retention_ms("churn") == 0
    assert history.latency("churn", "1", START + DAY, START + DAY + H) == ("baseline", None, "", [])


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("references", "key"),
    [
        ({"slot_minutes": 5}, "detect.references.slot_minutes"),  # not whole 10-min buckets
        ({"slot_minutes": 70, "seasonal_period": "day"}, "detect.references.slot_minutes"),
        ({"trailing_hours": 0.5}, "detect.references.trailing_hours"),
        ({"default": "weekly"}, "detect.references.default"),
        ({"overrides": {"churn": "yesterday"}}, "detect.references.overrides.churn"),
        ({"overrides": {"/age": "seasonal"}}, "detect.references.overrides./age"),
        ({"seasonal_period": "month"}, "detect.references.seasonal_period"),
        ({"seasonal_periods": 0}, "detect.references.seasonal_periods"),
        ({"latency": {"reference": "weekly"}}, "detect.latency.reference"),
        ({"latency": {"seasonal_period": "month"}}, "detect.latency.seasonal_period"),
        ({"latency": {"seasonal_periods": 0}}, "detect.latency.seasonal_periods"),
        # a slot that divides a week but not a day, which latency's own period needs
        ({"slot_minutes": 1008, "seasonal_period": "week"}, "detect.references.slot_minutes"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, references: dict[str, Any], key: str) -> None:
    path = tmp_path / "driftwire.yaml"
    references = dict(references)
    latency = references.pop("latency", None)
    detect: dict[str, Any] = {"references": references}
    if latency is not None:
        detect["latency"] = latency
    doc = {"profile": {"bucket_seconds": 600}, "detect": detect}
    path.write_text(orjson.dumps(doc).decode())  # JSON is YAML
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.key == key


def test_env_override_of_references(tmp_path: Path) -> None:
    path = tmp_path / "driftwire.yaml"
    path.write_text("detect:\n  references:\n    trailing_hours: 6\n")
    env = {"DRIFTWIRE_DETECT_REFERENCES": '{default: seasonal, overrides: {"churn/age": baseline}}'}
    refs = load_settings(path, env=env).detect.references
    assert refs.default == "seasonal" and refs.trailing_hours == 6
    assert refs.kind("churn") == "seasonal" and refs.kind("churn", "age") == "baseline"
    assert refs.kinds("churn") == {"seasonal", "baseline"}
