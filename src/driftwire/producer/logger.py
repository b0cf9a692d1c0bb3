"""The producer end: one inference event per prediction, without slowing the prediction down.

A model server calls :meth:`InferenceLogger.log` after each prediction. The call builds the
event, serializes it with orjson and appends it to a bounded in-memory queue; a background
thread running its own asyncio loop drains the queue into an aiokafka producer, which batches
(``linger_ms``) and compresses (``gzip``, in the standard library) what it sends. The caller
never waits for the network and never gets an exception from the logger.

Back-pressure, when Kafka is slow or down: **drop the oldest event**, count it
(``stats().dropped``) and log a warning at most once a minute. The queue is bounded by events
and by bytes, so memory stays bounded however long an outage lasts. The oldest events go first
because a drift monitor cares about what the model does *now*: after an outage, the newest
``max_queue_events`` events are the ones still worth delivering. Blocking the caller or raising
would put the monitor into the prediction path, which it must never be.

Production checks are cheap and O(1) per event (types of the top-level fields, a finite
non-negative latency, the serialized size); per-feature rules are left to driftwire's decoder,
which dead-letters what it cannot use. ``validate=True`` (development mode, opt-in) checks
every event against ``schemas/inference-event.schema.json`` with ``jsonschema`` (a development
dependency, imported only then) and raises :class:`InvalidEventError` at the call, so mistakes
show up in tests instead of in the dead-letter topic.

The producer's modules (this one and its ``driftwire.producer._*`` internals) import only the
standard library, orjson and aiokafka, so a model server does not pull in the worker's
numerical stack. The sending thread shares the GIL with the server: its work (building record
batches, a few microseconds per event, less with a longer ``linger_ms``) is CPU the process
spends too; ``load_tests/bench_producer.py`` measures both.

Ground truth that arrives later goes to the labels topic with
:meth:`~InferenceLogger.log_ground_truth`, carrying the event id that ``log`` returned.

>>> logger = InferenceLogger("localhost:9092", start=False)  # start=False: no thread, no I/O
>>> event_id = logger.log(model="churn", model_version="1.4.2", features={"age": 37},
...                       prediction=0.83, latency_ms=12.4)
>>> logger.stats().queued
1
>>> logger.close().dropped  # never started: what was queued is counted as dropped
1
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

from driftwire.producer._base import Timed, _LoggerBase
from driftwire.producer._event import InvalidEventError
from driftwire.producer._queue import ModelOptions, ProducerStats
from driftwire.producer._send import _Pump
from driftwire.producer.security import KafkaSecurity

__all__ = [
    "AsyncInferenceLogger",
    "InferenceLogger",
    "InvalidEventError",
    "KafkaSecurity",
    "ModelOptions",
    "ProducerStats",
    "Timed",
]

log = logging.getLogger("driftwire.producer")  # one logger name for the whole producer


class InferenceLogger(_LoggerBase):
    """Log inference events to Kafka from any Python code (threads welcome).

    A daemon thread runs an asyncio loop with an aiokafka producer; ``log`` only appends to a
    bounded queue. ``close(timeout)`` delivers what is queued within ``timeout`` seconds and
    stops the thread; it also runs at interpreter exit (``atexit``) unless called before.
    Create the logger after forking (in each worker process of a pre-forking server).

    ``models`` gives per-model :class:`ModelOptions` (sampling rate, topic); ground truth goes
    to ``labels_topic``. ``security``
    (:class:`~driftwire.producer.security.KafkaSecurity`, e.g. ``KafkaSecurity.from_env()``)
    signs in as the worker does, ``DRIFTWIRE_KAFKA_*`` and ``_FILE`` secrets included.
    ``enable_idempotence`` (default: on with ``acks="all"``) keeps a retried send from being
    written twice. ``kafka_options`` go to :class:`aiokafka.AIOKafkaProducer` as they are
    (timeouts; they override everything else).
    ``compression_type``: ``gzip`` (the standard library's zlib, which compresses outside the
    GIL), ``None`` to save that CPU, or ``lz4`` / ``zstd`` / ``snappy`` with aiokafka's
    extras installed. ``start=False`` creates no thread (events queue until ``start()``).
    """

    def __init__(
        self,
        bootstrap_servers: str = "localhost:9092",
        *,
        topic: str = "inference-events",
        labels_topic: str = "inference-labels",
        sample_rate: float = 1.0,
        models: Mapping[str, ModelOptions] | None = None,
        validate: bool = False,
        max_queue_events: int = 10_000,
        max_queue_bytes: int = 16 * 1024 * 1024,
        max_event_bytes: int = 65_536,
        linger_ms: int = 50,
        compression_type: str | None = "gzip",
        acks: Literal[0, 1, "all"] = "all",
        kafka_options: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
        enable_idempotence: bool | None = None,
        close_timeout: float = 5.0,
        start: bool = True,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            topic=topic,
            labels_topic=labels_topic,
            sample_rate=sample_rate,
            models=models,
            validate=validate,
            max_queue_events=max_queue_events,
            max_queue_bytes=max_queue_bytes,
            max_event_bytes=max_event_bytes,
            linger_ms=linger_ms,
            compression_type=compression_type,
            acks=acks,
            kafka_options=kafka_options,
            security=security,
            enable_idempotence=enable_idempotence,
        )
        self._close_timeout = close_timeout
        self._state: Literal["new", "running", "closed"] = "new"
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump: _Pump | None = None
        if start:
            self.start()

    def start(self) -> InferenceLogger:
        """Start the background thread (done by the constructor unless ``start=False``)."""
        with self._lifecycle:
            if self._state != "new":
                raise RuntimeError(f"InferenceLogger is {self._state}; start() runs once")
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._thread_main, args=(ready,), name="driftwire-producer", daemon=True
            )
            self._thread.start()
            ready.wait()
            self._state = "running"
            atexit.register(self._at_exit)
        return self

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        pump = _Pump(self._core, self._producer_options, self._linger_s)
        self._loop, self._pump = loop, pump

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(pump.wake)

        try:
            pump.task = loop.create_task(pump.run())
            self._core.notify = notify
            ready.set()
            if self._core.items:
                notify()
            loop.run_until_complete(pump.task)
        except BaseException:
            log.exception("driftwire producer thread failed")
        finally:
            self._core.notify = None
            self._core.abandon()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            ready.set()

    def close(self, timeout: float | None = None) -> ProducerStats:
        """Deliver what is queued within ``timeout`` seconds (default ``close_timeout``), stop.

        Whatever is left then is counted as dropped. Idempotent; returns the final stats.
        """
        timeout = self._close_timeout if timeout is None else max(0.0, timeout)
        with self._lifecycle:
            state, self._state = self._state, "closed"
        if state == "new":
            self._core.abandon()
        if state != "running":
            return self.stats()
        atexit.unregister(self._at_exit)
        loop, pump, thread = self._loop, self._pump, self._thread
        if loop is not None and pump is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(pump.request_close, timeout)
        if thread is not None:
            thread.join(timeout + 10.0)
            if thread.is_alive():
                log.warning("driftwire producer thread did not stop in time")
        return self.stats()

    def _at_exit(self) -> None:
        self.close(self._close_timeout)

    def __enter__(self) -> InferenceLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncInferenceLogger(_LoggerBase):
    """The same logger for asyncio servers: the sending task runs on the caller's loop.

    ``log`` stays a plain (non-async) call that only queues. ``await start()`` on the loop
    that serves requests (a FastAPI lifespan), ``await close(timeout)`` at shutdown; or
    ``async with AsyncInferenceLogger(...) as logger``. ``log`` may also be called from other
    threads (e.g. sync endpoints that run in a thread pool).
    """

    def __init__(
        self,
        bootstrap_servers: str = "localhost:9092",
        *,
        topic: str = "inference-events",
        labels_topic: str = "inference-labels",
        sample_rate: float = 1.0,
        models: Mapping[str, ModelOptions] | None = None,
        validate: bool = False,
        max_queue_events: int = 10_000,
        max_queue_bytes: int = 16 * 1024 * 1024,
        max_event_bytes: int = 65_536,
        linger_ms: int = 50,
        compression_type: str | None = "gzip",
        acks: Literal[0, 1, "all"] = "all",
        kafka_options: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
        enable_idempotence: bool | None = None,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            topic=topic,
            labels_topic=labels_topic,
            sample_rate=sample_rate,
            models=models,
            validate=validate,
            max_queue_events=max_queue_events,
            max_queue_bytes=max_queue_bytes,
            max_event_bytes=max_event_bytes,
            linger_ms=linger_ms,
            compression_type=compression_type,
            acks=acks,
            kafka_options=kafka_options,
            security=security,
            enable_idempotence=enable_idempotence,
        )
        self._state: Literal["new", "running", "closed"] = "new"
        self._pump: _Pump | None = None

    async def start(self) -> AsyncInferenceLogger:
        """Start the sending task on the running loop (connecting happens in the background)."""
        if self._state != "new":
            raise RuntimeError(f"AsyncInferenceLogger is {self._state}; start() runs once")
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        pump = _Pump(self._core, self._producer_options, self._linger_s)

        def notify() -> None:
            if threading.get_ident() == loop_thread:
                pump.wake()
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(pump.wake)

        pump.task = asyncio.create_task(pump.run(), name="driftwire-producer")
        self._pump = pump
        self._core.notify = notify
        self._state = "running"
        if self._core.items:
            pump.wake()
        return self

    async def close(self, timeout: float = 5.0) -> ProducerStats:  # noqa: ASYNC109 (a budget)
        """Deliver what is queued within ``timeout`` seconds, then stop. Idempotent."""
        state, self._state = self._state, "closed"
        if state == "running" and self._pump is not None and self._pump.task is not None:
            self._pump.request_close(max(0.0, timeout))
            await asyncio.gather(self._pump.task, return_exceptions=True)
        self._core.notify = None
        self._core.abandon()
        return self.stats()

    async def __aenter__(self) -> AsyncInferenceLogger:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
