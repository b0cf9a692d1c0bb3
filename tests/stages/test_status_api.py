"""The status routes on the worker's HTTP server: answers, errors, schema."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from prometheus_client import CollectorRegistry

from driftwire.ops.config import Settings
from driftwire.ops.health import HealthServer, Readiness
from driftwire.ops.metrics import Metrics
from driftwire.stages.detect.stage import DetectStage
from driftwire.stages.detect.status_api import StatusApi

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "status.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())


def get(port: int, path: str) -> tuple[int, Any, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


async def serve(
    stage: DetectStage | None, paths: list[str], *, runs_detect: bool = False
) -> list[tuple[int, Any, Any]]:
    api = StatusApi(
        lambda: stage,
        worker=lambda: {"stage": "all"},
        clock=lambda: 1.8e9,
        runs_detect=runs_detect,
    )
    server = HealthServer(CollectorRegistry(), Readiness(), api.routes())
    await server.start("127.0.0.1", 0)
    try:
        assert server.port is not None
        port = server.port
        return [await asyncio.to_thread(get, port, p) for p in paths]
    finally:
        await server.stop()


def test_a_detect_stage_answers_status_and_alerts() -> None:
    reg = CollectorRegistry()
    stage = DetectStage.from_settings(Settings(), Metrics(reg), Readiness())
    (status, doc, _), (code, alerts, _), (bad, error, _) = asyncio.run(
        serve(stage, ["/api/v1/status", "/api/v1/alerts", "/api/v1/status?state=burning"])
    )
    assert status == 200
    VALIDATOR.validate(doc)
    assert doc["worker"] == {"stage": "all", "partitions": []}
    assert doc["generated_at"] == "2027-01-15T08:00:00.000Z"
    assert (code, alerts) == (200, [])
    assert bad == 400
    assert error == {"error": "state='burning' is not a state: use one of firing, breaching, "
                     "insufficient_data, ok"}  # fmt: skip


def test_a_profile_only_worker_says_where_to_ask() -> None:
    ((status, body, _),) = asyncio.run(serve(None, ["/api/v1/status"]))
    assert status == 404
    assert "runs no detect stage" in body["error"]


def test_a_worker_whose_detect_stage_is_starting_says_ask_again() -> None:
    """Between the HTTP server's start and the detect stage's (broker and topic checks), a
    worker that runs one is not a profile-only worker: 503 with Retry-After, not 404."""
    ((status, body, headers),) = asyncio.run(serve(None, ["/api/v1/status"], runs_detect=True))
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "starting" in body["error"]
