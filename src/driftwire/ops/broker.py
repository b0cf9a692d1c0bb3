"""Is the broker there? Wait for it at start, and keep watching it while running.

At start every process that talks to Kafka (the worker, a bridge, ``baseline build --publish``)
calls :func:`wait_for_broker`: when the bootstrap servers do not answer a metadata request it
logs one line naming them and the retry, retries with exponential backoff, logs one line when
the broker answers, and raises :class:`~driftwire.errors.TransportError` (one line, no
traceback) after ``kafka.startup_timeout_seconds``. While the probe runs, aiokafka's own
"Unable connect to ..." error of every attempt is held back: the one line says it all.

:class:`BrokerWatch` probes the broker every few seconds while the worker runs and keeps
``Readiness.broker_reachable`` true to what it finds, so ``/readyz`` turns not-ready when the
broker goes away and ready again when it is back, each change logged once.

The retry delays double from :data:`BACKOFF_INITIAL_S` up to :data:`BACKOFF_MAX_S`:

>>> list(backoff_delays(limit_s=30.0))
[0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 4.5]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from driftwire.errors import TransportError
from driftwire.ops.config import KafkaSettings
from driftwire.ops.health import Readiness
from driftwire.ops.kafka_check import try_connect

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
PROBE_TIMEOUT_S = 5.0
#: aiokafka loggers whose connection errors the probe holds back (it reports them itself)
_AIOKAFKA_CONNECTION_LOGGERS = ("aiokafka", "aiokafka.conn")


def backoff_delays(limit_s: float) -> Iterator[float]:
    """Retry delays, doubling up to :data:`BACKOFF_MAX_S`, that add up to ``limit_s``."""
    delay, spent = BACKOFF_INITIAL_S, 0.0
    while spent < limit_s:
        step = min(delay, limit_s - spent)
        yield step
        spent += step
        delay = min(delay * 2, BACKOFF_MAX_S)


class _HoldBack(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


@contextlib.contextmanager
def _aiokafka_quiet() -> Iterator[None]:
    """Hold back aiokafka's connection warnings and errors inside the block."""
    hold = _HoldBack()
    loggers = [logging.getLogger(name) for name in _AIOKAFKA_CONNECTION_LOGGERS]
    for logger in loggers:
        logger.addFilter(hold)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(hold)


async def probe(kafka: KafkaSettings, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """One connection and sign-in attempt: ``None`` if it succeeded, else why not (network
    trouble); a failed sign-in or TLS check raises :class:`TransportError` (no retry helps)."""
    try:
        with _aiokafka_quiet():
            failures = await asyncio.wait_for(try_connect(kafka), timeout_s)
    except TimeoutError:
        return f"no answer from {kafka.bootstrap_servers} within {timeout_s:g} s"
    return "; ".join(str(f) for f in failures) or None


async def wait_for_broker(kafka: KafkaSettings, stop: asyncio.Event | None = None) -> bool:
    """Return once the broker answers (True) or ``stop`` is set (False).

    Raises :class:`TransportError` when it has not answered for ``kafka.startup_timeout_seconds``.
    """
    limit_s = kafka.startup_timeout_seconds
    started = time.monotonic()
    problem = await probe(kafka)
    if problem is None:
        return True
    log.warning(
        f"Kafka broker unreachable at {kafka.bootstrap_servers} (kafka.bootstrap_servers); "
        f"retrying with backoff for up to {limit_s:g} s (kafka.startup_timeout_seconds)",
        extra={"fields": {"bootstrap_servers": kafka.bootstrap_servers, "error": problem}},
    )
    stop = stop or asyncio.Event()
    for delay in backoff_delays(limit_s):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return False
        problem = await probe(kafka)
        if problem is None:
            waited = time.monotonic() - started
            log.info(
                f"Kafka broker reachable at {kafka.bootstrap_servers} after {waited:.1f} s",
                extra={"fields": {"bootstrap_servers": kafka.bootstrap_servers}},
            )
            return True
    raise TransportError(
        f"the Kafka broker at {kafka.bootstrap_servers} (kafka.bootstrap_servers) stayed "
        f"unreachable for {limit_s:g} s (kafka.startup_timeout_seconds); giving up "
        f"(last error: {problem})",
        retriable=False,
    )


class BrokerWatch:
    """Probes the broker every ``interval_s`` and keeps ``readiness.broker_reachable`` true."""

    def __init__(self, kafka: KafkaSettings, readiness: Readiness, interval_s: float = 5.0):
        self._kafka = kafka
        self._ready = readiness
        self._interval_s = interval_s
        self._last: bool | None = None  # what the previous probe found

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                problem = await probe(self._kafka, min(PROBE_TIMEOUT_S, self._interval_s))
            except TransportError as exc:  # refused now (credentials rotated?): not ready
                problem = str(exc)
            reachable = problem is None
            if self._last is not None and reachable != self._last:
                if reachable:
                    log.info(
                        f"Kafka broker reachable again at {self._kafka.bootstrap_servers}",
                        extra={"fields": {"bootstrap_servers": self._kafka.bootstrap_servers}},
                    )
                else:
                    log.warning(
                        f"Kafka broker unreachable at {self._kafka.bootstrap_servers}; "
                        "not ready until it answers",
                        extra={
                            "fields": {
                                "bootstrap_servers": self._kafka.bootstrap_servers,
                                "error": problem,
                            }
                        },
                    )
            self._ready.broker_reachable = self._last = reachable
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
