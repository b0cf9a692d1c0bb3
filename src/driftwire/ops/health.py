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
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from driftwire.ops.basic_auth import CHALLENGE, BasicAuth
from driftwire.ops.web_config import CertificateReload, WebConfig

log = logging.getLogger(__name__)

#: The exit code of a worker or bridge that stopped because it was stuck (its orchestrator
#: restarts it); 0 is a clean stop.
EXIT_STUCK = 3


def failure_line(exc: BaseException, limit: int = 300) -> str:
    """One line that says what ``exc`` was, for a log line and ``/healthz``.

    >>> failure_line(ValueError("bad" + chr(10) + "things"))
    'ValueError: bad things'
    >>> failure_line(TimeoutError())
    'TimeoutError'
    >>> from driftwire.errors import TransportError
    >>> failure_line(TransportError("the alerts topic is gone"))  # ours say what they are
    'the alerts topic is gone'
    """
    from driftwire.errors import DriftwireError

    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if isinstance(exc, DriftwireError) and text:
        return text[:limit]
    line = f"{name}: {text}" if text and not text.startswith(name) else text or name
    return line[:limit]


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

    ``failed`` says why a part of the worker failed: from then until the process is gone
    (its other parts stop, within their bounds) ``/healthz`` answers 503 with it.

    >>> r.failed = "detect stage: the dead-letter topic refused a record"
    >>> r.ready
    False
    """

    assigned: int = 0
    broker_reachable: bool = False
    stuck: bool = False
    failed: str | None = None
    details: dict[str, object] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.broker_reachable and not self.stuck and self.failed is None and not self.waiting


class HealthServer:
    """Serves ``/metrics``, ``/healthz``, ``/readyz`` (and ``routes``) on the worker's loop.

    A scrape runs ``before_scrape`` (cheap copies of what custom collectors export) on the
    loop, then renders the page in a thread, one scrape at a time: rendering a big page does
    not stall the stages that share the loop.

    With ``web_config`` (``http.web_config_file``) the server speaks TLS (mTLS when the file names a
    client CA) and every route, unknown ones included, answers 401 without a valid basic-auth
    user; bcrypt checks run on a thread of their own, and a remembered credential needs none.
    Renewed certificate files are loaded every ``certificate_check_s`` when they change.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        routes: Sequence[Route] = (),
        before_scrape: Sequence[Callable[[], None]] = (),
        web_config: WebConfig | None = None,
        certificate_check_s: float = 60.0,
    ) -> None:
        self._registry = registry
        self._web = web_config
        self._auth = BasicAuth(web_config.users) if web_config and web_config.users else None
        self._checking: ThreadPoolExecutor | None = None
        self._certificate_check_s = certificate_check_s
        self._reloading: asyncio.Task[None] | None = None
        self._readiness = readiness
        self._routes = tuple(routes)
        self._before_scrape = before_scrape
        self._scraping = asyncio.Lock()
        # a thread of its own: a scrape never queues behind other work of the loop's default
        # executor (name resolution of reconnecting clients, file reads)
        self._render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftwire-scrape")
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def scheme(self) -> str:
        return "https" if self._web is not None and self._web.context is not None else "http"

    async def start(self, host: str, port: int) -> None:
        middlewares = [self._authenticate] if self._auth is not None else []
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for path, handler in self._routes:
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = self._web.context if self._web is not None else None
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        addresses = self._runner.addresses  # (host, port, ...) of the listening sockets
        self.port = int(addresses[0][1]) if addresses else port
        if self._auth is not None and context is None:
            log.warning(
                "basic_auth_users without tls_server_config (http.web_config_file): passwords "
                "cross the network readable"
            )
        if context is not None and self._web is not None and self._web.tls is not None:
            reload = CertificateReload(self._web.tls, context)
            self._reloading = asyncio.create_task(self._reload(reload), name="tls-reload")

    async def _reload(self, reload: CertificateReload) -> None:
        """Renewed certificate files are served without a restart (checked periodically)."""
        while True:
            await asyncio.sleep(self._certificate_check_s)
            outcome = reload.check()
            if outcome == "reloaded":
                log.info("TLS certificate of the HTTP endpoints reloaded")
            elif outcome is not None:
                log.warning(
                    "TLS certificate files of the HTTP endpoints changed but cannot be used "
                    "(%s); still serving the previous ones",
                    outcome,
                )

    async def stop(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloading
            self._reloading = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._render.shutdown(wait=False)
        if self._checking is not None:
            self._checking.shutdown(wait=False)

    @web.middleware
    async def _authenticate(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        assert self._auth is not None  # the middleware is installed only with users
        header = request.headers.get("Authorization")
        allowed = self._auth.cached(header)
        if allowed is None:  # one bcrypt check, off the loop
            if self._checking is None:
                self._checking = ThreadPoolExecutor(1, thread_name_prefix="driftwire-auth")
            loop = asyncio.get_running_loop()
            allowed = await loop.run_in_executor(self._checking, self._auth.check, header)
        if not allowed:
            return web.Response(
                status=401, text="401 Unauthorized\n", headers={"WWW-Authenticate": CHALLENGE}
            )
        return await handler(request)

    async def _metrics(self, _: web.Request) -> web.Response:
        async with self._scraping:
            for prepare in self._before_scrape:
                prepare()
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._render, generate_latest, self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        if self._readiness.failed is not None:
            body = {"status": "failed", "reason": self._readiness.failed}
            return web.json_response(body, status=503)
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
