"""Throughput alerts: a version that stops sending while others flow, rate drops and jumps."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from scenarios import MINUTE, START, edited, run, small, table

from driftwire.detect.throughput import RateState, throughput_findings
from driftwire.ops.config import ThroughputSettings

VERSIONS = ("1.4.2", "1.5.0")
T0, T1 = START + 40 * MINUTE, START + 50 * MINUTE


def scenario(edit: Any) -> list[tuple[int, str, str, str, str, str, str]]:
    spec = small(24_000, 60, versions=VERSIONS, numeric=1, categorical=0)
    alerts = run(edited(spec, edit), throughput={"reference_buckets": 10})
    return [(*row, a.labels["model_version"]) for row, a in zip(table(alerts), alerts, strict=True)]


def test_a_version_that_stops_sending_is_no_data_and_resolves_when_back() -> None:
    def stop(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
        late = T0 <= event["timestamp"] < T1
        return None if late and event["model_version"] == "1.5.0" else event

    assert scenario(stop) == [
        (43, "firing", "throughput", "all", "", "no_data", "1.5.0"),  # 3rd silent bucket
        (51, "resolved", "throughput", "all", "", "no_data", "1.5.0"),  # the 1st back
    ]


def test_a_gap_in_all_input_is_not_no_data() -> None:
    def gap(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
        return None if T0 <= event["timestamp"] < T1 else event

    assert scenario(gap) == []


def test_rate_drop_and_jump_against_the_trailing_rate() -> None:
    def thin_after(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
        keep = event["model_version"] != "1.5.0" or event["timestamp"] < T0 or rng.random() < 0.1
        return event if keep else None

    def thin_before(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any] | None:
        keep = event["model_version"] != "1.5.0" or event["timestamp"] >= T0 or rng.random() < 0.1
        return event if keep else None

    # the window's count: seen once most of the window has the new rate, then K = 2
    assert scenario(thin_after) == [(46, "firing", "throughput", "all", "", "rate_drop", "1.5.0")]
    assert scenario(thin_before) == [(44, "firing", "throughput", "all", "", "rate_jump", "1.5.0")]


def findings(state: RateState, counts: list[int], flowing: bool = True) -> dict[str, float | None]:
    settings = ThroughputSettings(reference_buckets=6, no_data_buckets=2)
    out: dict[str, float | None] = {}
    for n in counts:
        found = throughput_findings(
            state, n, flowing, settings, {"model": "m", "model_version": "1"},
            window_buckets=2, min_count=50,
        )  # fmt: skip
        out = {f.labels["statistic"]: f.value for f in found}
    return out


def test_no_data_silences_the_rate_check_until_its_buckets_left_the_window() -> None:
    state = RateState()
    assert findings(state, [100] * 8)["rate_drop"] is not None
    assert findings(state, [0, 0]) == {"no_data": 2.0, "rate_drop": None, "rate_jump": None}
    assert findings(state, [100])["rate_drop"] is None  # one silent bucket still in the window
    back = findings(state, [100])
    assert back["no_data"] == 0.0 and back["rate_drop"] is not None and back["rate_drop"] < 1.1


def test_silent_buckets_without_other_traffic_change_nothing() -> None:
    state = RateState()
    findings(state, [100] * 8)
    before = state.to_state()
    assert findings(state, [0, 0, 0], flowing=False) == {}
    assert state.to_state() == before


def test_anomalous_buckets_stay_out_of_the_trailing_reference() -> None:
    state = RateState()
    findings(state, [100] * 8 + [2])  # half the window dropped: 1.95x
    for _ in range(20):  # a long drop keeps firing instead of becoming the new normal
        drop = findings(state, [2])["rate_drop"]
        assert drop is not None and drop > 20
    assert set(state.history) == {100}


def test_rate_state_round_trips_through_json() -> None:
    state = RateState()
    findings(state, [100, 120, 0, 90, 0, 0, 80])
    again = RateState.from_state(orjson.loads(orjson.dumps(state.to_state())))
    assert again == state
