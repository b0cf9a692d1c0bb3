"""Fault (e), short: 20,000 fuzzed inputs, each profiled or dead-lettered with a reason, exactly;
and events hypothesis generates, the same way.

The million-input run is ``load_tests/fuzz_inputs.py`` (result in ``load_tests/results``).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fuzz_inputs import START_MS, account, fuzzed, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwire.decode.decoder import REASONS


def test_twenty_thousand_fuzzed_inputs_are_each_accounted_for_exactly() -> None:
    tally = run(20_000, seed=7)
    tally.check()
    assert tally.inputs == 20_000
    # the fuzzing reaches far: most reasons, late and future events, the models cap
    assert len(tally.reasons) >= len(REASONS) - 2, sorted(set(REASONS) - set(tally.reasons))
    assert tally.in_partials > 5_000 and tally.late and tally.future and tally.dropped_by_cap


def test_the_fuzzed_inputs_are_reproducible() -> None:
    assert list(fuzzed(300, seed=3)) == list(fuzzed(300, seed=3))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": st.integers(START_MS - 120_000, START_MS + 120_000) | json_values,
        "model": st.sampled_from(["churn", "fraud", ""]) | json_values,
        "model_version": st.sampled_from(["1", "2"]) | json_values,
        "segment": st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3)
        | json_values,
        "features": st.dictionaries(st.text(max_size=6), json_values, max_size=6) | json_values,
        "prediction": st.floats() | json_values,
        "latency_ms": st.floats() | json_values,
        "event_id": json_values,
    },
)


def encoded(event: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(event)
    except (orjson.JSONEncodeError, TypeError):  # NaN is null to orjson; big ints refuse
        return json.dumps(event).encode("utf-8", "surrogatepass")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=50))
def test_hypothesis_events_are_each_accounted_for_exactly(generated: list[dict[str, Any]]) -> None:
    tally = account([encoded(e) for e in generated], now_ms=START_MS)
    tally.check()
    assert tally.inputs == len(generated)
