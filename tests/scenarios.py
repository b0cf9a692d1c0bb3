"""Small generated scenarios for the in-memory pipeline: few features and segments, fast.

Helpers shared by the latency, data-quality, throughput and grouping tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from jsonschema import Draft202012Validator, FormatChecker

from driftwire.alerts.alert import Alert, encode
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import Settings
from driftwire.stages.inmemory import InMemoryPipeline

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "alert.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
MINUTE = 60_000
START = StreamSpec(events=1).start_ms
SEGMENT = "region=eu,tier=gold"

Edit = Callable[[dict[str, Any], np.random.Generator], dict[str, Any] | None]


def small(
    events: int,
    minutes: int,
    *changes: Change,
    seed: int = 5,
    versions: tuple[str, ...] = ("1.4.2",),
    regions: tuple[str, ...] = ("eu", "us"),
    numeric: int = 2,
    categorical: int = 1,
) -> StreamSpec:
    """A stream of ``events`` over ``minutes``: segments eu/us x gold, few features."""
    return StreamSpec(
        events=events,
        seed=seed,
        events_per_second=events / (minutes * 60),
        versions=versions,
        regions=regions,
        tiers=("gold",),
        numeric_features=numeric,
        categorical_features=categorical,
        changes=changes,
    )


def settings(**detect: Any) -> Settings:
    alerts = detect.pop("alerts", {})
    base = {"window_buckets": 5, "min_count": 200, "min_reference_count": 400}
    return Settings.model_validate({"detect": {**base, **detect}, "alerts": alerts})


def edited(spec: StreamSpec, edit: Edit, seed: int = 99) -> Iterator[bytes]:
    """The events of ``spec`` passed through ``edit`` (``None`` drops an event)."""
    rng = np.random.default_rng(seed)
    for raw in generate(spec):
        event = edit(orjson.loads(raw), rng)
        if event is not None:
            yield orjson.dumps(event)


def run(values: Iterable[bytes], **detect: Any) -> list[Alert]:
    alerts = list(pipeline(**detect).run(values))
    for alert in alerts:
        VALIDATOR.validate(orjson.loads(encode(alert, "driftwire-test")[1]))
    return alerts


def pipeline(**detect: Any) -> InMemoryPipeline:
    return InMemoryPipeline(settings(**detect))


def minute(ms: int) -> int:
    """Minutes since the stream's start."""
    return (ms - START) // MINUTE


def of(alerts: list[Alert], kind: str, status: str | None = None) -> list[Alert]:
    return [a for a in alerts if a.kind == kind and (status is None or a.status == status)]


def table(alerts: list[Alert]) -> list[tuple[int, str, str, str, str, str]]:
    """(minute, status, kind, segment, feature, statistic) of every alert, for asserts."""
    return [
        (
            minute(a.evaluated_at_ms),
            a.status,
            a.kind,
            a.labels.get("segment", ""),
            a.labels.get("feature", ""),
            a.labels.get("statistic", ""),
        )
        for a in alerts
    ]
