"""``GET /api/v1/status``, ``GET /api/v1/alerts`` and ``GET /report``: the detect stage's view.

The worker's HTTP server (:class:`~driftwire.ops.health.HealthServer`) serves these routes
next to ``/metrics``. Both answer from the detect stage's state at the moment of the request
through the pure :func:`~driftwire.detect.status.build_status` and
:func:`~driftwire.detect.status.alertmanager_alerts`: no Kafka round trip. A worker sees the
models of the partials partitions its detect stage owns (``worker.partitions`` in the
document); with several workers, ask each. A worker that runs only the profile stage answers
404, a bad query 400, each with one line saying what to do.

``/report?model=M&version=V`` is the drift report of the last window of ``M`` ``V`` that the
worker evaluated against a reference, rendered by :func:`~driftwire.offline.report.render_report`
as ``driftwire report`` renders it, with the alerts firing now. ``version`` left out: the
version evaluated most recently. An alert's ``generatorURL`` names its window
(``window_end=``, with ``alerts.generator_url_base`` set); the worker holds only the last
window, and says so on the page when the linked one has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web

from driftwire.alerts.alert import Alert, iso
from driftwire.detect.status import (
    ConditionStatus,
    ModelStatus,
    StatusQuery,
    alertmanager_alerts,
    build_status,
)
from driftwire.offline.report import render_report
from driftwire.ops.health import Route

if TYPE_CHECKING:
    from driftwire.detect.detector import Evaluation
    from driftwire.detect.settings import DetectSettings

__all__ = ["StatusApi", "StatusSource"]


class StatusSource(Protocol):
    """What the routes read: :class:`~driftwire.stages.detect.stage.DetectStage` is one."""

    @property
    def detectors(self) -> Mapping[int, Any]: ...  # by owned partials partition

    def status_records(self) -> tuple[list[ModelStatus], list[ConditionStatus]]: ...

    def last_evaluation(self, model: str, version: str | None) -> Evaluation | None: ...

    @property
    def detect_settings(self) -> DetectSettings: ...


STATUS_PATH = "/api/v1/status"
ALERTS_PATH = "/api/v1/alerts"
REPORT_PATH = "/report"
#: the answer while the worker checks the broker and its topics, before its detect stage exists
STARTING = "the detect stage is starting (after the broker and topic checks): ask again"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


class StatusApi:
    """The status routes of one worker; ``stage()`` is its detect stage (``None``: none, or
    not started yet when ``runs_detect``: then the routes answer 503, ask again)."""

    def __init__(
        self,
        stage: Callable[[], StatusSource | None],
        *,
        worker: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.time,
        runs_detect: bool = False,
    ) -> None:
        self._stage = stage
        self._runs_detect = runs_detect
        self._worker = worker
        self._clock = clock

    def routes(self) -> list[Route]:
        return [(STATUS_PATH, self.status), (ALERTS_PATH, self.alerts), (REPORT_PATH, self.report)]

    def _query(self, request: web.Request) -> tuple[StatusSource, StatusQuery] | web.Response:
        stage = self._stage()
        if stage is None:
            if self._runs_detect:
                return _json({"error": STARTING}, status=503, headers={"Retry-After": "1"})
            return _json(
                {"error": "this worker runs no detect stage (--stage profile): ask a detect one"},
                status=404,
            )
        try:
            return stage, StatusQuery.parse(dict(request.query))
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)

    async def status(self, request: web.Request) -> web.Response:
        found = self._query(request)
        if isinstance(found, web.Response):
            return found
        stage, query = found
        models, conditions = stage.status_records()
        worker = {**self._worker(), "partitions": sorted(stage.detectors)}
        now_ms = int(self._clock() * 1000)
        return _json(build_status(models, conditions, query, now_ms=now_ms, worker=worker))

    async def alerts(self, request: web.Request) -> web.Response:
        found = self._query(request)
        if isinstance(found, web.Response):
            return found
        stage, query = found
        _, conditions = stage.status_records()
        alerts, cursor = alertmanager_alerts(conditions, query)
        # Alertmanager's GET /api/v2/alerts answers a bare list; the next page is a header
        headers = {} if cursor is None else {"X-Next-Cursor": cursor}
        return _json(alerts, headers=headers)

    async def report(self, request: web.Request) -> web.Response:
        stage = self._stage()
        if stage is None:
            if self._runs_detect:
                return _text(STARTING, 503)
            return _text(
                "this worker runs no detect stage (--stage profile): ask a detect one", 404
            )
        model = request.query.get("model", "")
        version = request.query.get("version") or None
        if not model:
            return _text(
                "add ?model=NAME (and &version=VERSION): GET /api/v1/status lists the models", 400
            )
        evaluation = stage.last_evaluation(model, version)
        if evaluation is None:
            which = f"{model} {version}" if version else model
            return _text(
                f"no window of {which} was evaluated against a reference by this worker yet "
                f"(it owns partials partitions {sorted(stage.detectors)}; a model lives on one "
                "worker, GET /api/v1/status on each lists its models)",
                404,
            )
        _, conditions = stage.status_records()
        key = (evaluation.model, evaluation.model_version)
        firing: list[Alert] = [
            c.alert
            for c in conditions
            if c.alert is not None and (c.labels.get("model"), c.labels.get("model_version")) == key
        ]
        end = iso(evaluation.bucket_end_ms)
        source = "the worker's live state: the last window evaluated, alerts firing now"
        asked = request.query.get("window_end")
        if asked and asked != end:
            source += (
                f" (the window ending {asked} has passed; a worker holds only its last window: "
                "driftwire replay --topic ... --since/--until recomputes past ones)"
            )
        # about 0.3 s for 12 inputs x 8 segments: off the loop the stages share (the
        # evaluation is not changed after the detector made it)
        page = await asyncio.to_thread(
            render_report,
            evaluation,
            firing,
            stage.detect_settings,
            generated_ms=int(self._clock() * 1000),
            source=source,
        )
        return web.Response(text=page, content_type="text/html")


def _text(message: str, status: int) -> web.Response:
    return web.Response(text=message + "\n", status=status, content_type="text/plain")
