"""``GET /api/v1/status`` and ``GET /api/v1/alerts``: the detect stage's view, over HTTP.

The worker's HTTP server (:class:`~driftwire.ops.health.HealthServer`) serves these routes
next to ``/metrics``. Both answer from the detect stage's state at the moment of the request
through the pure :func:`~driftwire.detect.status.build_status` and
:func:`~driftwire.detect.status.alertmanager_alerts`: no Kafka round trip. A worker sees the
models of the partials partitions its detect stage owns (``worker.partitions`` in the
document); with several workers, ask each. A worker that runs only the profile stage answers
404, a bad query 400, each with one line saying what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web

from driftwire.detect.status import (
    ConditionStatus,
    ModelStatus,
    StatusQuery,
    alertmanager_alerts,
    build_status,
)
from driftwire.ops.health import Route

__all__ = ["StatusApi", "StatusSource"]


class StatusSource(Protocol):
    """What the routes read: :class:`~driftwire.stages.detect.stage.DetectStage` is one."""

    @property
    def detectors(self) -> Mapping[int, Any]: ...  # by owned partials partition

    def status_records(self) -> tuple[list[ModelStatus], list[ConditionStatus]]: ...


STATUS_PATH = "/api/v1/status"
ALERTS_PATH = "/api/v1/alerts"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


class StatusApi:
    """The status routes of one worker; ``stage()`` is its detect stage (``None``: none)."""

    def __init__(
        self,
        stage: Callable[[], StatusSource | None],
        *,
        worker: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stage = stage
        self._worker = worker
        self._clock = clock

    def routes(self) -> list[Route]:
        return [(STATUS_PATH, self.status), (ALERTS_PATH, self.alerts)]

    def _query(self, request: web.Request) -> tuple[StatusSource, StatusQuery] | web.Response:
        stage = self._stage()
        if stage is None:
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
