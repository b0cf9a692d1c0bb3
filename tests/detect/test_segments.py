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
