"""Both stages through the in-memory transport: the detection scenarios, fast."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from driftwire.alerts.alert import Alert, encode
from driftwire.detect.reference import Reference, ReferenceStore
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.stages.inmemory import InMemoryPipeline

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "alert.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
MINUTE = 60_000
START = StreamSpec(events=1).start_ms
SEGMENT = "region=eu,tier=gold"


def settings(**detect: object) -> Settings:
    return Settings.model_validate(
        {"detect": {"window_buckets": 5, "min_count": 200, "min_reference_count": 400, **detect}}
    )


def spec(events: int, minutes: int, *changes: Change, seed: int = 11) -> StreamSpec:
    return StreamSpec(
        events=events, seed=seed, events_per_second=events / (minutes * 60), changes=changes
    )


def run(stream: StreamSpec, store: ReferenceStore | None = None, **detect: object) -> list[Alert]:
    return list(InMemoryPipeline(settings(**detect), store).run(generate(stream)))


def conditions(alerts: list[Alert], status: str = "firing") -> set[tuple[str, str, str]]:
    return {
        (a.labels["kind"], a.labels["feature"], a.labels["segment"])
        for a in alerts
        if a.status == status
    }


def test_stationary_stream_over_eight_segments_stays_silent() -> None:
    alerts = run(spec(50_000, 60))
    assert alerts == []


@pytest.mark.parametrize("rule", ["calibrated", "fixed"])
def test_feature_shift_in_one_segment_fires_there_and_resolves(rule: str) -> None:
    change = Change("income", START + 40 * MINUTE, 1.5, SEGMENT, end_ms=START + 70 * MINUTE)
    alerts = run(spec(120_000, 100, change), rule=rule)
    expected = {("data_drift", "income", SEGMENT)}
    if rule == "calibrated":
        # an eighth of the traffic moved by 1.5 sd moves all traffic by ~0.19 sd: a real,
        # significant change of the aggregate too (PSI ~0.05 stays under the fixed 0.1)
        expected.add(("data_drift", "income", "all"))
    assert conditions(alerts) == expected
    assert conditions(alerts, "resolved") == expected
    first = min(a.evaluated_at_ms for a in alerts if a.status == "firing")
    # windows slide by one bucket; "within two windows" read strictly: before the first
    # window that starts after the change has even ended (5 buckets)
    assert change.start_ms < first <= change.start_ms + 5 * MINUTE
    resolved = [a for a in alerts if a.status == "resolved"]
    assert all(r.evaluated_at_ms >= START + 70 * MINUTE for r in resolved)
    fired = [a for a in alerts if a.status == "firing"]
    assert len({a.fingerprint for a in fired}) == len(fired)  # one alert per condition
    assert {a.fingerprint for a in resolved} <= {a.fingerprint for a in fired}


def test_prediction_score_shift_is_prediction_drift() -> None:
    change = Change("prediction", START + 40 * MINUTE, 2.0)
    alerts = run(spec(80_000, 60, change))
    kinds = {(k, f) for k, f, _ in conditions(alerts)}
    assert ("prediction_drift", "prediction.score") in kinds
    assert all(k == "prediction_drift" for k, _ in kinds)


def test_every_alert_validates_and_carries_what_on_call_needs() -> None:
    change = Change("age", START + 30 * MINUTE, 3.0)
    alerts = run(spec(60_000, 50, change))
    assert alerts
    for alert in alerts:
        key, value, headers = encode(alert, "driftwire-test")
        event = orjson.loads(value)
        VALIDATOR.validate(event)
        assert key.decode() == event["data"]["fingerprint"]
        assert dict(headers)["ce_id"].decode() == event["id"]
        data = event["data"]
        assert data["reference"]["kind"] == "frozen_window"
        assert "first complete window" in data["reference"]["note"]
        assert data["evidence"], "a person needs the evidence"
        assert data["window"]["count"] >= 200


def test_same_input_gives_same_fingerprints() -> None:
    change = Change("income", START + 40 * MINUTE, 1.5, SEGMENT)
    first = run(spec(80_000, 60, change))
    second = run(spec(80_000, 60, change))
    assert first
    assert [(a.fingerprint, a.status) for a in first] == [(a.fingerprint, a.status) for a in second]


def test_baseline_reference_is_used_and_named() -> None:
    # the baseline: a stationary stream profiled by the same code, then frozen
    pipeline = InMemoryPipeline(settings())
    list(pipeline.run(generate(spec(40_000, 30, seed=2))))
    version = next(iter(pipeline.detector._models["churn"].versions.values()))
    assert version.frozen is not None
    baseline = Reference.from_bytes(version.frozen.to_bytes())
    baseline.kind, baseline.id = "baseline", "baseline:test"
    store = ReferenceStore()
    store.put(baseline)
    change = Change("age", START + 10 * MINUTE, 3.0)
    alerts = run(spec(40_000, 30, change, seed=3), store)
    assert ("data_drift", "age", "all") in conditions(alerts)
    assert {a.reference["kind"] for a in alerts} == {"baseline"}


@pytest.mark.parametrize("window", [1, 3])
def test_window_length_is_respected(window: int) -> None:
    change = Change("age", START + 30 * MINUTE, 3.0)
    alerts = run(spec(60_000, 50, change), window_buckets=window)
    assert alerts
    for alert in alerts:
        assert alert.window["end"] > alert.window["start"]


def test_two_versions_of_one_model_are_both_watched() -> None:
    change = Change("age", START + 30 * MINUTE, 3.0)
    stream = StreamSpec(
        events=80_000,
        seed=13,
        versions=("1.0", "2.0"),
        events_per_second=80_000 / 3000,
        changes=(change,),
    )
    alerts = run(stream)
    assert {a.labels["model_version"] for a in alerts if a.status == "firing"} == {"1.0", "2.0"}


def test_state_parts_do_not_pile_up_without_a_store() -> None:
    # the Kafka stage stores (and so drains) the detector's state parts after every record;
    # a replay stores nothing, so it must not keep them bucket after bucket
    values = list(generate(spec(8_000, 30)))
    kept, replay = (
        InMemoryPipeline(settings()),
        InMemoryPipeline(settings(), keep_state_parts=False),
    )
    for start in range(0, len(values), 2000):
        kept.feed(values[start : start + 2000])
        replay.feed(values[start : start + 2000])
    assert replay.stats.windows_evaluated == kept.stats.windows_evaluated > 20
    assert len(kept.detector.stored_parts()) > 20  # what restart tests take
    assert replay.detector.stored_parts() == []
