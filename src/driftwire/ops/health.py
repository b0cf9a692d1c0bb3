"""Liveness and readiness, and the HTTP endpoint that serves them with ``/metrics``.

:class:`Liveness` is pure: the worker reports progress, and the verdict is computed from the
times it is given. A worker that has partitions, sees lag and makes no progress for
``timeout_s`` is stuck (the silent-consumer failure mode of aiokafka#1154): ``/healthz`` then
answers 503 and the worker exits non-zero so that its orchestrator restarts it.

>>> live = Liveness(timeout_s=60)
>>> live.progress(now_s=100.0)
>>> live.stuck(now_s=130.0, assigned=3, lag=500)
False
>>> live.stuck(now_s=200.0, assigned=3, lag=500)
True
>>> live.stuck(now_s=200.0, assigned=3, lag=0)   # idle, not stuck
False

A batch that does not finish (a commit, a send or a rebalance listener that hangs) is stuck
too, whatever the lag, once it has taken ``timeout_s``:

>>> live.begin(now_s=300.0)
>>> live.stuck(now_s=301.0, assigned=3, lag=0), live.stuck(now_s=361.0, assigned=3, lag=0)
(False, True)
>>> live.end(now_s=362.0)
>>> live.stuck(now_s=362.0, assigned=3, lag=0)
False
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

#: The exit code of a worker or bridge that stopped because it was stuck (its orchestrator
#: restarts it); 0 is a clean stop.
EXIT_STUCK = 3

#: An extra GET route of the server: (path, handler), e.g. the status API's.
Route = tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


@dataclass
class Liveness:
    """Tracks the last moment the worker made progress."""

    timeout_s: float
    last_progress_s: float | None = None
    busy_since_s: float | None = None  # a batch is being handled since then

    def progress(self, now_s: float) -> None:
        self.last_progress_s = now_s

    def begin(self, now_s: float) -> None:
        """A batch is being handled from ``now_s`` on."""
        self.busy_since_s = now_s

    def end(self, now_s: float) -> None:
        """The batch is handled."""
        self.busy_since_s = None

    def stuck(self, now_s: float, assigned: int, lag: int) -> bool:
        if self.busy_since_s is not None and now_s - self.busy_since_s > self.timeout_s:
            return True
        if assigned == 0 or lag <= 0 or self.last_progress_s is None:
            return False
        return now_s - self.last_progress_s > self.timeout_s


@dataclass
class Readiness:
    """What ``/readyz`` reports: the broker reachable, and no part still waiting for something.

    ``waiting`` maps a part (``profile``, ``detect``) to what it waits for: the input topic to
    exist, its first partition assignment, its app to start. A part removes its entry once it
    has what it waited for; a consumer-group member that was given no partition (more members
    than partitions) is ready too, as a spare.

    >>> r = Readiness(broker_reachable=True, waiting={"profile": "partition assignment"})
    >>> r.ready
    False
    >>> del r.waiting["profile"]
    >>> r.ready
    True
    """

    assigned: int = 0
    broker_reachable: bool = False
    stuck: bool = False
    details: dict[str, object] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.broker_reachable and not self.stuck and not self.waiting


class HealthServer:
    """Serves ``/metrics``, ``/healthz``, ``/readyz`` (and ``routes``) on the worker's loop.

    A scrape runs ``before_scrape`` (cheap copies of what custom collectors export) on the
    loop, then renders the page in a thread, one scrape at a time: rendering a big page does
    not stall the stages that share the loop.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        routes: Sequence[Route] = (),
        before_scrape: Sequence[Callable[[], None]] = (),
    ) -> None:
        self._registry = registry
        self._readiness = readiness
        self._routes = tuple(routes)
        self._before_scrape = before_scrape
        self._scraping = asyncio.Lock()
        # a thread of its own: a scrape never queues behind other work of the loop's default
        # executor (name resolution of reconnecting clients, file reads)
        self._render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftwire-scrape")
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for path, handler in self._routes:
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses  # (host, port, ...) of the listening sockets
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._render.shutdown(wait=False)

    async def _metrics(self, _: web.Request) -> web.Response:
        async with self._scraping:
            for prepare in self._before_scrape:
                prepare()
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._render, generate_latest, self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        if self._readiness.stuck:
            return web.json_response({"status": "stuck"}, status=503)
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        r = self._readiness
        body = {
            "ready": r.ready,
            "assigned_partitions": r.assigned,
            "broker_reachable": r.broker_reachable,
            "waiting_for": dict(r.waiting),
            **r.details,
        }
        return web.json_response(body, status=200 if r.ready else 503)
