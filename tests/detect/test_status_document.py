"""The status document and the Alertmanager-shaped firing alerts, from a detector's state."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from scenarios import MINUTE, SEGMENT, START, of, pipeline, small

from driftwire.alerts.alert import Alert, fingerprint, iso
from driftwire.detect.detector import Detector
from driftwire.detect.status import (
    MAX_LIMIT,
    StatusQuery,
    alertmanager_alerts,
    build_status,
)
from driftwire.offline.generator import Change, generate

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "status.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
T = START + 20 * MINUTE
NOW = START + 10 * 60 * MINUTE


def drifted(**detect: object) -> tuple[Detector, list[Alert]]:
    """A stream whose income shifts in one segment from minute 20 and stays shifted."""
    p = pipeline(**detect)
    alerts = list(p.run(generate(small(12_000, 45, Change("income", T, 2.0, SEGMENT)))))
    return p.detector, alerts


def still_firing(alerts: list[Alert]) -> set[str]:
    out: set[str] = set()
    for a in alerts:
        if a.status == "firing":
            out.add(a.fingerprint)
        else:
            out.discard(a.fingerprint)
    return out


def status(detector: Detector, query: StatusQuery | None = None) -> dict[str, object]:
    models, conditions = detector.status_records()
    doc = build_status(models, conditions, query or StatusQuery(), now_ms=NOW)
    VALIDATOR.validate(orjson.loads(orjson.dumps(doc)))
    return doc


def test_the_status_lists_what_fires_first_with_value_threshold_and_since() -> None:
    detector, alerts = drifted()
    firing = still_firing(alerts)
    assert firing, "the shift fires"
    doc = status(detector)
    conditions = doc["conditions"]
    assert isinstance(conditions, list)
    states = [c["state"] for c in conditions]
    assert states == sorted(states, key=["firing", "breaching", "insufficient_data", "ok"].index)
    shown = {c["fingerprint"] for c in conditions if c["state"] == "firing"}
    assert shown == firing
    assert doc["counts"]["firing"] == len(firing)  # type: ignore[index]
    for c in conditions:
        if c["state"] != "firing":
            continue
        assert c["feature"] == "income"
        assert c["value"] >= c["threshold"] == c["thresholds"][c["severity"]]
        emitted = [a for a in alerts if a.fingerprint == c["fingerprint"]][-1]
        assert c["starts_at"] == iso(emitted.starts_at_ms)
        # the summary speaks of the last window, the emission of the window it fired in
        assert c["summary"].split(" by ")[0] == emitted.summary.split(" by ")[0]
        assert c["since"] is not None and c["window"]["count"] > 0
    ok = [c for c in conditions if c["state"] == "ok"]
    assert ok and all(c["value"] < c["thresholds"]["warning"] for c in ok)
    (model,) = doc["models"]  # type: ignore[misc]
    assert model["model"] == "churn"
    (version,) = model["versions"]
    assert SEGMENT in version["segments"]
    assert version["reference"]["kind"] == "frozen_window"
    assert version["reference"]["id"].startswith("frozen:churn/1.4.2@")
    assert version["reference_events"]["all"] > 0
    assert version["window"]["end"] <= model["evaluated_until"]


def test_insufficient_data_says_why() -> None:
    detector, _ = drifted(min_count=100_000)
    doc = status(detector, StatusQuery(states=("insufficient_data",)))
    conditions = doc["conditions"]
    assert isinstance(conditions, list) and conditions
    drift = [c for c in conditions if c["kind"] == "data_drift"]
    assert drift
    assert all("fewer than min_count=100000" in c["reason"] for c in drift)
    assert all(c["value"] is None for c in conditions)
    assert doc["counts"]["firing"] == 0  # type: ignore[index]


def test_pages_walk_every_condition_once_in_order() -> None:
    detector, _ = drifted()
    whole = status(detector, StatusQuery(limit=MAX_LIMIT))["conditions"]
    assert isinstance(whole, list) and len(whole) > 7
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = status(detector, StatusQuery(limit=3, cursor=cursor))
        conditions = page["conditions"]
        assert isinstance(conditions, list) and len(conditions) <= 3
        seen += [c["id"] for c in conditions]
        pages += 1
        cursor = page["next_cursor"]  # type: ignore[assignment]
        if cursor is None:
            break
        assert pages == 1 or page["models"]  # every page names its models
    assert seen == [c["id"] for c in whole]
    assert pages == -(-len(whole) // 3)


def test_filters_by_model_and_state() -> None:
    detector, _ = drifted()
    assert status(detector, StatusQuery(model="nope"))["conditions"] == []
    assert status(detector, StatusQuery(model="nope"))["models"] == []
    firing = status(detector, StatusQuery(model="churn", states=("firing",)))
    assert {c["state"] for c in firing["conditions"]} == {"firing"}  # type: ignore[union-attr]
    assert firing["filters"] == {"model": "churn", "state": ["firing"]}


def test_the_alerts_are_alertmanagers_shape() -> None:
    detector, alerts = drifted()
    _, conditions = detector.status_records()
    out, cursor = alertmanager_alerts(conditions, StatusQuery())
    assert cursor is None
    assert {a["fingerprint"] for a in out} == still_firing(alerts)
    for a in out:
        assert set(a) == {
            "labels", "annotations", "startsAt", "endsAt", "updatedAt", "generatorURL",
            "fingerprint", "receivers", "status",
        }  # fmt: skip
        assert a["fingerprint"] == fingerprint(a["labels"])
        assert a["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
        assert a["endsAt"] is None and a["startsAt"] <= a["updatedAt"]
        assert a["annotations"]["summary"]
        assert a["generatorURL"].startswith("http")
    first, cursor = alertmanager_alerts(conditions, StatusQuery(limit=1))
    assert len(first) == 1 and (cursor is None) == (len(out) == 1)


def test_a_silenced_firing_alert_is_suppressed() -> None:
    silence = {"matchers": ['feature="income"'], "ends_at": "2027-01-01T00:00:00Z"}
    detector, alerts = drifted(alerts={"silences": [silence]})
    assert not of(alerts, "data_drift")  # held back
    _, conditions = detector.status_records()
    out, _ = alertmanager_alerts(conditions, StatusQuery())
    drift = [a for a in out if a["labels"]["kind"] == "data_drift"]
    assert drift
    for a in drift:
        assert a["status"]["state"] == "suppressed"
        assert len(a["status"]["silencedBy"]) == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "burning"}, "state='burning' is not a state"),
        ({"limit": "0"}, "limit=0 is out of range"),
        ({"limit": "many"}, "limit='many' is not a number"),
        ({"cursor": "%%%"}, "cursor is not one this server returned"),
        ({"modle": "x"}, "unknown parameter 'modle'"),
    ],
)
def test_bad_queries_say_what_to_do(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StatusQuery.parse(params)


def test_a_query_from_parameters() -> None:
    q = StatusQuery.parse({"model": "churn", "state": "firing,breaching", "limit": "5"})
    assert q == StatusQuery("churn", ("firing", "breaching"), 5, None)
