"""Data-quality alerts: missing rates with a sample-size floor, wrong types, unseen categories,
schema changes, and drift alerts that point to a coinciding quality alert."""

from __future__ import annotations

from typing import Any

import numpy as np
from scenarios import MINUTE, SEGMENT, START, edited, of, run, small, table

from driftwire.detect.quality import proportion_floor, quality_findings
from driftwire.offline.generator import Change
from driftwire.ops.config import QualitySettings
from driftwire.sketch.profile import Profile

T = START + 30 * MINUTE
LABELS = {"model": "m", "model_version": "1", "segment": "all"}


def null_income_in_eu(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    if event["timestamp"] >= T and event["segment"]["region"] == "eu" and rng.random() < 0.3:
        event["features"]["income"] = None
    return event


def test_missing_rate_rise_fires_in_its_segment_and_escalates() -> None:
    alerts = run(edited(small(12_000, 45), null_income_in_eu))
    assert table(alerts)[:2] == [
        (32, "firing", "data_quality", SEGMENT, "income", "missing_rate"),
        (33, "firing", "data_quality", "all", "income", "missing_rate"),
    ]
    assert {a.kind for a in alerts} == {"data_quality"}
    assert {a.labels["feature"] for a in alerts} == {"income"}
    assert "region=us,tier=gold" not in {a.labels["segment"] for a in alerts}
    first = alerts[0]
    assert first.labels["severity"] == "warning" and first.value >= 0.05
    assert first.evidence["reference"]["share"] == 0.0
    assert first.evidence["floor"] < first.value
    escalated = [a for a in alerts if a.labels["severity"] == "critical"]
    assert escalated and all(a.value >= 0.2 for a in escalated if a.status == "firing")
    replaced = [a for a in alerts if a.status == "resolved"]
    assert all("escalated" in a.summary for a in replaced)


def test_drift_on_a_feature_with_bad_data_points_to_the_quality_alert() -> None:
    change = Change("income", T, 2.0, SEGMENT)
    alerts = run(edited(small(12_000, 45, change), null_income_in_eu))
    drift = next(a for a in of(alerts, "data_drift", "firing") if a.labels["segment"] == SEGMENT)
    quality = next(
        a
        for a in of(alerts, "data_quality", "firing")
        if a.labels["segment"] == SEGMENT and a.labels["statistic"] == "missing_rate"
    )
    # both fire in the same window
    assert drift.evaluated_at_ms == quality.evaluated_at_ms
    pointer = drift.evidence["data_quality"][0]
    assert pointer["fingerprint"] == quality.fingerprint
    assert pointer["statistic"] == "missing_rate"
    assert quality.fingerprint in drift.annotations["data_quality"]
    event = drift.cloudevent("test")
    assert event["data"]["annotations"]["data_quality"] == drift.annotations["data_quality"]
    # a drift alert on a feature with clean data says nothing of the kind
    clean = run(edited(small(12_000, 45, Change("age", T, 2.0, SEGMENT)), null_income_in_eu))
    assert all("data_quality" not in a.annotations for a in of(clean, "data_drift"))


def test_schema_change_removed_and_added_features() -> None:
    def change_schema(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if event["timestamp"] >= T:
            del event["features"]["age"]
            event["features"]["promo"] = "a" if rng.random() < 0.5 else "b"
        return event

    alerts = run(edited(small(12_000, 45), change_schema))
    firing = {
        (a.labels["segment"], a.labels["feature"], a.labels["statistic"], a.labels["severity"])
        for a in alerts
        if a.status == "firing"
    }
    for segment in ("all", SEGMENT, "region=us,tier=gold"):
        assert (segment, "age", "feature_removed", "critical") in firing
        assert (segment, "promo", "feature_added", "warning") in firing
        assert (segment, "age", "missing_rate", "critical") in firing
    removed = next(a for a in alerts if a.labels["statistic"] == "feature_removed")
    assert removed.value == 1.0  # every reference event carried it
    # only once no event of the window carries it: 5 buckets after the change, K = 2
    assert removed.evaluated_at_ms == T + 6 * MINUTE


def test_wrong_types_and_unseen_categories() -> None:
    def garble(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if event["timestamp"] >= T and rng.random() < 0.1:
            event["features"]["age"] = "n/a"
            event["features"]["country"] = f"X{rng.integers(0, 3)}"
        return event

    alerts = run(edited(small(12_000, 45), garble))
    quality = {(a.labels["feature"], a.labels["statistic"]) for a in of(alerts, "data_quality")}
    # three new countries of ~3.3% each: unseen together, and each one new
    assert quality == {
        ("age", "wrong_type"),
        ("country", "unseen_share"),
        ("country", "new_category"),
    }
    unseen = next(a for a in alerts if a.labels.get("statistic") == "unseen_share")
    assert {c["category"] for c in unseen.evidence["unseen"]} <= {"X0", "X1", "X2"}
    assert unseen.evidence["expected_share"] == 0.0  # no singletons among 8 countries
    new = next(a for a in alerts if a.labels.get("statistic") == "new_category")
    assert {c["category"] for c in new.evidence["new_categories"]} <= {"X0", "X1", "X2"}
    assert new.evidence["new_categories"]  # those above the threshold in the firing window


def profiles(n0: int, missing0: int, n1: int, missing1: int) -> tuple[Profile, Profile]:
    ref, cur = Profile(), Profile()
    ref.update([{"x": None if i < missing0 else 1.0} for i in range(n0)])
    cur.update([{"x": None if i < missing1 else 1.0} for i in range(n1)])
    return ref, cur


def missing(ref: Profile, cur: Profile) -> tuple[float | None, float]:
    found = quality_findings(
        ref, cur, QualitySettings(), LABELS, min_count=100, min_reference_count=100
    )
    f = next(f for f in found if f.labels["statistic"] == "missing_rate")
    return f.value, f.thresholds.warning


def test_small_samples_are_held_to_the_noise_floor() -> None:
    # 10% -> 17% missing: 7 points, above the 5-point threshold ...
    value, threshold = missing(*profiles(1000, 100, 200, 34))
    assert value is not None and round(value, 3) == 0.07
    assert threshold > value  # ... but within 4 standard errors at 1000 vs 200 events
    value, threshold = missing(*profiles(20_000, 2000, 20_000, 3400))
    assert value is not None and round(value, 3) == 0.07 and threshold == 0.05


def test_floor_is_the_pooled_two_proportion_z() -> None:
    assert (
        proportion_floor(100, 1000, 34, 200, 4.0)
        > 0.07
        > proportion_floor(2000, 20_000, 3400, 20_000, 4.0)
    )
    assert proportion_floor(0, 1000, 0, 200, 4.0) == 0.0  # nothing missing anywhere


def test_a_rare_feature_vanishing_from_a_small_window_is_not_significant() -> None:
    ref = Profile()
    ref.update([{"x": 1.0, "rare": 1.0 if i % 10 == 0 else None} for i in range(5000)])
    rows = [{"x": 1.0}]

    def removed(n: int) -> tuple[float | None, float]:
        cur = Profile()
        cur.update(rows * n)
        found = quality_findings(
            ref, cur, QualitySettings(), LABELS, min_count=100, min_reference_count=100
        )
        f = next(f for f in found if f.labels["statistic"] == "feature_removed")
        return f.value, f.thresholds.warning

    value, threshold = removed(100)  # 10% of 100: 10 expected, absence p = 4.5e-5 > 3e-5
    assert value == 0.1 and threshold > value
    value, threshold = removed(1000)  # 100 expected: absence is not chance
    assert value == 0.1 and threshold == 0.05


def new_country(share: float) -> Any:
    def edit(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if event["timestamp"] >= T and rng.random() < share:
            event["features"]["country"] = "XX"
        return event

    return edit


def test_a_new_category_at_one_percent_is_reported_and_one_at_a_fifth_of_that_is_not() -> None:
    alerts = run(edited(small(30_000, 45), new_country(0.01)))
    found = [a for a in of(alerts, "data_quality", "firing") if a.labels["segment"] == "all"]
    assert [a.labels["statistic"] for a in found] == ["new_category"]
    alert = found[0]
    assert alert.labels["feature"] == "country"
    # counted since it first appeared (667 values a bucket): announced within the first window
    assert 31 <= (alert.evaluated_at_ms - START) // MINUTE <= 35
    (new,) = alert.evidence["new_categories"]
    assert new["category"] == "XX" and 0.005 <= new["share"] <= 0.02 and new["count"] >= 5
    assert "new categories: 'XX' " in alert.summary and "country" in alert.summary
    assert round(alert.value, 6) == new["share"] and alert.threshold == 0.005
    quiet = run(edited(small(30_000, 45), new_country(0.002)))
    assert not [a for a in quiet if a.labels.get("statistic") == "new_category"]
    assert not of(quiet, "data_quality")
