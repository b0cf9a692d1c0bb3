"""``driftwire worker``: both stages (or one) in one process, with metrics and health.

SIGTERM and SIGINT stop fetching, flush, commit and leave the group; a stuck consumer turns
``/healthz`` unhealthy and makes the process exit non-zero so its orchestrator restarts it.
SIGUSR1 writes every thread's stack to stderr (a worker that seems to hang says where).
SIGHUP, or a change of the config file, reloads silences, thresholds and per-feature
overrides (``driftwire.ops.reload``). The HTTP server also answers ``/api/v1/status`` and
``/api/v1/alerts`` (``driftwire.stages.detect.status_api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from driftwire.errors import TransportError
from driftwire.ops.broker import BrokerWatch, wait_for_broker
from driftwire.ops.config import Settings, load_settings
from driftwire.ops.health import EXIT_STUCK, HealthServer, Readiness, failure_line
from driftwire.ops.kafka_check import authorization_problem, check_kafka, setup_problem
from driftwire.ops.logs import configure_logging
from driftwire.ops.metrics import ConfigMetrics, Metrics
from driftwire.ops.topics import ensure_topics
from driftwire.ops.web_config import load_web_config

log = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 20, 100)  # CPython's defaults: (700, 10, 10)


def tune_gc() -> None:
    """Fewer cyclic garbage collections on the hot path, as a long-running worker wants.

    Every fetch allocates thousands of event dicts that live until their batch is folded, so
    CPython's default gen-0 threshold (700 allocations) runs a collection every fraction of a
    batch, promotes the batch's dicts and soon scans the older generations too. Objects of
    start-up (modules, settings) are frozen out of every later scan. Measured on the decode +
    fold path: about 10% less CPU per event. Nothing in driftwire relies on prompt collection
    of reference cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def until_one_fails(tasks: list[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
    """Wait until one of ``tasks`` fails or ends cancelled, or all have ended; return those
    that have ended.

    ``asyncio.wait(..., return_when=FIRST_EXCEPTION)`` does not count a cancelled task as a
    failure: a stage that ended cancelled (a ``CancelledError`` leaked out of a client library,
    ``driftwire.stages.consumer_stop``) would leave the worker waiting for ever for the others.

    >>> async def demo() -> list[str]:
    ...     async def forever() -> None:
    ...         await asyncio.Event().wait()
    ...     async def leaks() -> None:
    ...         raise asyncio.CancelledError
    ...     tasks = [asyncio.create_task(forever(), name="a")]
    ...     tasks.append(asyncio.create_task(leaks(), name="b"))
    ...     ended = await until_one_fails(tasks)
    ...     tasks[0].cancel()
    ...     return sorted(t.get_name() for t in ended)
    >>> asyncio.run(demo())
    ['b']
    """
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if any(t.cancelled() or t.exception() is not None for t in tasks if t.done()):
            break
    return {t for t in tasks if t.done()}


async def serve(
    settings: Settings,
    stage: str,
    stop: asyncio.Event,
    *,
    config: str | None = None,
    reload_poll_s: float = 2.0,
    on_failure: Callable[[str], None] | None = None,
) -> int:
    """Run the chosen stages until ``stop`` is set; returns the process exit code.

    With ``config`` (the settings file), SIGHUP reloads it, and so does a change of the file
    seen by a check every ``reload_poll_s`` seconds (0: SIGHUP only). ``on_failure`` is called
    (once) with the reason when a stage fails, before the others stop: the CLI bounds the
    process's remaining life with it (:func:`exit_after`).
    """

    def report_failure(why: str) -> None:
        if on_failure is not None:
            on_failure(why)

    from driftwire.ops.reload import ConfigReloader, config_hash
    from driftwire.stages.detect.stage import DetectStage
    from driftwire.stages.detect.status_api import StatusApi
    from driftwire.stages.profile import ProfileStage
    from driftwire.stages.profile_core import profile_core

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    readiness = Readiness()
    config_metrics = ConfigMetrics(registry)
    config_metrics.running(config_hash(settings))
    detect: DetectStage | None = None
    reloader: ConfigReloader | None = None

    def worker_info() -> dict[str, object]:
        running = reloader.hash if reloader is not None else config_hash(settings)
        return {"stage": stage, "config_hash": running}

    api = StatusApi(lambda: detect, worker=worker_info, runs_detect=stage in ("all", "detect"))
    health = HealthServer(
        registry,
        readiness,
        api.routes(),
        before_scrape=metrics.before_scrape,
        web_config=load_web_config(settings.http.web_config_file),
    )
    await health.start(settings.http.host, settings.http.port)
    try:
        reachable = await wait_for_broker(settings.kafka, stop)
        if reachable:
            await check_kafka(settings.kafka)  # a wrong password or certificate: one line
            await ensure_topics(settings)  # created when missing, checked when they exist
    except BaseException:
        await health.stop()
        raise
    if not reachable:  # stopped while waiting for the broker
        await health.stop()
        return 0
    readiness.broker_reachable = True
    log.info(
        "worker started",
        extra={
            "fields": {
                "stage": stage,
                "http_port": health.port,
                "http_scheme": health.scheme,
                "events_topic": settings.topics.events,
            }
        },
    )
    tasks: list[asyncio.Task[None]] = []
    profile: ProfileStage | None = None
    if stage in ("all", "profile"):
        profile = ProfileStage(settings, profile_core(settings), metrics, readiness)
        tasks.append(asyncio.create_task(profile.run(stop), name="profile"))
    if stage in ("all", "detect"):
        detect = DetectStage.from_settings(settings, metrics, readiness)
        tasks.append(asyncio.create_task(detect.run(stop), name="detect"))
    if stage == "truth" or (stage == "all" and settings.truth.enabled):
        from driftwire.ops.truth_metrics import TruthMetrics
        from driftwire.stages.truth import TruthStage

        truth = TruthStage(settings, TruthMetrics(registry))
        tasks.append(asyncio.create_task(truth.run(stop), name="truth"))
    watcher_tasks: list[asyncio.Task[None]] = []
    if config is not None:

        def apply(new: Settings) -> None:
            if detect is not None:
                detect.reconfigure(new)

        reloader = ConfigReloader(config, settings, apply, on_hash=config_metrics.running)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, reloader.reload, "SIGHUP")
        if reload_poll_s > 0:
            watch = reloader.watch(stop, interval_s=reload_poll_s)
            watcher_tasks.append(asyncio.create_task(watch, name="config-watch"))

    async def watchdog() -> None:
        while not stop.is_set():
            if readiness.stuck:
                log.error("no progress with lag and assigned partitions; exiting to be restarted")
                stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def failure_watch() -> None:
        """A stage that failed stops the others at once (not once its own stop is over) and
        bounds the rest of the worker's life: see :func:`exit_after`."""
        while not stop.is_set() and readiness.failed is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)
        if readiness.failed is not None:
            report_failure(readiness.failed)
            stop.set()

    watcher = asyncio.create_task(watchdog(), name="watchdog")
    failures = asyncio.create_task(failure_watch(), name="failure-watch")
    broker_watch = asyncio.create_task(
        BrokerWatch(settings.kafka, readiness).run(stop), name="broker-watch"
    )
    code = 0
    denied: str | None = None
    try:
        for task in await until_one_fails(tasks):
            if task.cancelled():  # e.g. a CancelledError that leaked out of aiokafka
                why = readiness.failed or (
                    f"{task.get_name()} stage ended cancelled although nothing stopped it"
                )
            elif (failed := task.exception()) is not None:
                denied = denied or authorization_problem(failed, settings) or setup_problem(failed)
                if denied is not None:
                    code = 1
                    continue
                why = readiness.failed or f"{task.get_name()} stage failed: {failure_line(failed)}"
                log.debug("the failure in full", exc_info=failed)
            else:
                continue
            readiness.failed = why
            log.error(f"{why}; stopping the worker (exit code 1)")
            code = 1
        if code:
            report_failure(readiness.failed or "a stage failed")
        stop.set()
        left = [t for t in tasks if not t.done()]
        if left:
            _, late = await asyncio.wait(left, timeout=stop_bound_s(settings))
            for task in late:  # abandoned: the process exits without them
                log.error(
                    f"the {task.get_name()} stage did not stop within "
                    f"{stop_bound_s(settings):g} s; exiting without it",
                    extra={"fields": {"stage": task.get_name()}},
                )
                task.cancel()
    finally:
        failures.cancel()
        await asyncio.gather(failures, return_exceptions=True)
        watcher.cancel()
        broker_watch.cancel()
        await asyncio.gather(watcher, broker_watch, return_exceptions=True)
        for task in watcher_tasks:
            task.cancel()
        if config is not None:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await health.stop()
    if readiness.stuck:
        code = EXIT_STUCK
    log.info("worker stopped", extra={"fields": {"exit_code": code}})
    if denied is not None:  # a missing ACL or broker setup: one line on stderr (the CLI)
        raise TransportError(denied, retriable=False)
    return code


#: What the detect stage's Faust app and its baselines follower get to stop (FaustOptions).
DETECT_STOP_S = 30.0
#: beyond the stages' own stop bound, how long a SIGTERM or SIGINT may take before the exit
SIGNAL_MARGIN_S = 5.0


def stop_bound_s(settings: Settings) -> float:
    """How long the stages get to stop after a failure: the profile stage's stop bound
    (``consumer.shutdown_timeout_seconds``) plus the detect stage's."""
    return settings.consumer.shutdown_timeout_seconds + DETECT_STOP_S


def exit_after(seconds: float, code: int, why: str) -> None:
    """End the process with ``code`` in ``seconds`` whatever still runs then.

    Once a stage has failed the worker must go, so that its supervisor restarts it: a stop
    that hangs (a client's close, a thread of the Faust app that does not end, the event
    loop's executor at exit) must not keep a process alive that consumes nothing. A daemon
    thread, so that it neither keeps a process that ends in time alive nor needs the event
    loop to be responsive.
    """

    def hard_exit() -> None:
        log.error(
            f"the worker did not stop within {seconds:g} s after {why}; exiting with {code} now"
        )
        _exit_now(code)

    if any(t.name == "driftwire-exit-bound" for t in threading.enumerate()):
        return  # already bounded
    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True
    timer.name = "driftwire-exit-bound"
    timer.start()


def run_worker(config: str | None, *, stage: str = "all", reload_poll_s: float = 2.0) -> int:
    settings = load_settings(config)
    configure_logging(settings.log.level)
    load_web_config(settings.http.web_config_file)  # a bad file: one line before anything starts
    tune_gc()
    # `kill -USR1 <pid>`: every thread's stack on stderr, for a worker that seems to hang
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(name: str) -> None:
            if not stop.is_set():  # bounded: a stop that hangs on a frozen broker ends anyway
                exit_after(stop_bound_s(settings) + SIGNAL_MARGIN_S, 1, name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)

        def bound(why: str) -> None:
            exit_after(stop_bound_s(settings), 1, why)

        return await serve(
            settings, stage, stop, config=config, reload_poll_s=reload_poll_s, on_failure=bound
        )

    try:
        code = asyncio.run(main())
    except KafkaError as exc:  # the broker went away between the start-up checks: one line
        raise TransportError(
            f"Kafka at {settings.kafka.bootstrap_servers} (kafka.bootstrap_servers): {exc}"
        ) from None
    return without_lingering_threads(code)


def without_lingering_threads(code: int, *, wait_s: float = 2.0) -> int:
    """``code``, once the threads the stages leave behind have ended, or end the process.

    A client's thread (the Faust app's consumer thread, when the broker froze) can outlive
    the event loop: it would keep the process alive for its own timeouts and then print its
    tracebacks of the closed loop. The worker has stopped and logged its exit code by then,
    so after ``wait_s`` the process exits with that code without it.
    """
    deadline = time.monotonic() + wait_s
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    me = threading.current_thread()
    left = sorted(t.name for t in threading.enumerate() if t is not me and not t.daemon)
    if not left:
        return code
    log.warning(
        f"exiting without waiting for threads that did not end: {', '.join(left)}",
        extra={"fields": {"threads": left, "exit_code": code}},
    )
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    """End the process with ``code`` at once, the log written out first."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
