"""Segments: an unsegmented model is evaluated once; the ``all`` aggregate says what drives it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from scenarios import MINUTE, SEGMENT, START, edited, of, pipeline, run, small

from driftwire.offline.generator import Change, generate

T = START + 20 * MINUTE


def unsegmented(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    event.pop("segment")
    return event


def test_an_unsegmented_model_emits_each_condition_once() -> None:
    spec = small(12_000, 45, Change("income", T, 2.0))
    p = pipeline()
    alerts = list(p.run(edited(spec, unsegmented)))
    fired = of(alerts, "data_drift", "firing")
    assert fired, "the shift is found"
    conditions = Counter(
        (a.labels["feature"], a.labels["statistic"], a.labels["severity"]) for a in fired
    )
    assert set(conditions.values()) == {1}
    assert {a.labels["segment"] for a in alerts} == {"all"}
    assert "in all traffic" in fired[0].summary
    samples = [labels for labels, *_ in p.detector.condition_samples()]
    assert {labels["segment"] for labels in samples} == {"all"}
    keys = Counter(
        (labels["kind"], labels.get("feature", ""), labels["statistic"]) for labels in samples
    )
    assert set(keys.values()) == {1}


def test_a_segmented_model_keeps_its_segments_and_the_aggregate() -> None:
    alerts = run(generate(small(12_000, 45, Change("income", T, 2.0))))
    segments = {a.labels["segment"] for a in of(alerts, "data_drift", "firing")}
    assert segments == {"all", SEGMENT, "region=us,tier=gold"}


def test_the_aggregate_names_the_segment_that_drives_it() -> None:
    alerts = run(generate(small(12_000, 45, Change("income", T, 2.0, SEGMENT))))
    aggregate = [a for a in of(alerts, "data_drift", "firing") if a.labels["segment"] == "all"]
    assert aggregate, "the shift in one segment moves the aggregate too"
    for alert in aggregate:
        assert "all traffic" not in alert.summary
        assert f"in the aggregate over segments, driven by {SEGMENT}" in alert.summary
        assert alert.evidence["driving_segments"] == [SEGMENT]


def test_a_bound_wider_than_the_value_is_not_shown() -> None:
    alerts = run(generate(small(12_000, 45, Change("income", T, 2.0, SEGMENT))))
    assert alerts
    for alert in alerts:
        if alert.bound is not None and alert.value is not None and alert.bound >= alert.value:
            assert "error bound" not in alert.description
