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

This module imports only the standard library, orjson and aiokafka, so a model server does
not pull in the worker's numerical stack. The sending thread shares the GIL with the server:
its work (building record batches, a few microseconds per event, less with a longer
``linger_ms``) is CPU the process spends too; ``load_tests/bench_producer.py`` measures both.

>>> logger = InferenceLogger("localhost:9092", start=False)  # start=False: no thread, no I/O
>>> logger.log(model="churn", model_version="1.4.2", features={"age": 37}, prediction=0.83,
...            latency_ms=12.4)
>>> logger.stats().queued
1
>>> logger.close().dropped  # never started: what was queued is counted as dropped
1
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from driftwire.errors import ConfigError, InputError

__all__ = [
    "AsyncInferenceLogger",
    "InferenceLogger",
    "InvalidEventError",
    "ModelOptions",
    "ProducerStats",
    "Timed",
]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_WARN_EVERY_S = 60.0
_SCHEMA_NAME = "inference-event.schema.json"


class InvalidEventError(InputError):
    """An event breaks the inference-event contract (raised in development mode only)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"invalid inference event at '{field}': {problem}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOptions:
    """Per-model settings: a sampling rate in [0, 1] and a topic of its own."""

    sample_rate: float = 1.0
    topic: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ConfigError("producer.sample_rate", f"must be in [0, 1], got {self.sample_rate}")


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """Counters of one logger since it was created (a snapshot).

    ``logged``: events that passed the checks and sampling; each one ends up ``sent``
    (acknowledged by the broker), ``failed`` (handed to the Kafka client but not delivered: a
    broker error after the client's own retries), ``dropped`` (pushed out of the full queue,
    drop-oldest; logged after close; or still queued when ``close`` gave up) or is still
    ``queued`` / in flight. ``sampled_out``: skipped by sampling. ``invalid``: refused by the
    checks (production mode). ``queued_bytes``: the queue's size now.
    """

    logged: int
    sampled_out: int
    invalid: int
    dropped: int
    sent: int
    failed: int
    queued: int
    queued_bytes: int


# --- the queue and the event encoder: pure, thread-safe, no I/O --------------------------------


class _Core:
    """Event building, checks, sampling, the bounded queue and the counters."""

    def __init__(
        self,
        *,
        topic: str,
        sample_rate: float,
        models: Mapping[str, ModelOptions],
        validate: bool,
        max_queue_events: int,
        max_queue_bytes: int,
        max_event_bytes: int,
    ) -> None:
        if max_queue_events < 1:
            raise ConfigError("producer.max_queue_events", f"must be >= 1, got {max_queue_events}")
        if max_event_bytes < 256 or max_queue_bytes < max_event_bytes:
            raise ConfigError(
                "producer.max_queue_bytes",
                f"need 256 <= max_event_bytes ({max_event_bytes}) <= max_queue_bytes "
                f"({max_queue_bytes})",
            )
        self.default = ModelOptions(sample_rate=sample_rate, topic=topic)
        self.models = {
            name: ModelOptions(sample_rate=o.sample_rate, topic=o.topic or topic)
            for name, o in models.items()
        }
        self.max_events = max_queue_events
        self.max_bytes = max_queue_bytes
        self.max_event_bytes = max_event_bytes
        self.validator: Callable[[Any], None] | None = _schema_validator() if validate else None
        self.lock = threading.Lock()
        self.items: deque[tuple[str, bytes]] = deque()
        self.bytes = 0
        self.logged = self.sampled_out = self.invalid = self.dropped = 0
        self.sent = self.failed = 0  # written by the sending loop only
        self.accepting = True
        self.wake_pending = False
        self.notify: Callable[[], None] | None = None  # wakes the sending loop
        self._random = random.random
        self._last_warning = -math.inf

    # -- the caller's side ---------------------------------------------------------------------

    def log(
        self,
        model: str,
        model_version: str,
        features: Mapping[str, Any],
        prediction: Any,
        latency_ms: float,
        segment: Mapping[str, str] | None,
        event_id: str | None,
        timestamp: datetime | float | str | None,
    ) -> None:
        options = self.models.get(model, self.default) if type(model) is str else self.default
        if options.sample_rate < 1.0 and self._random() >= options.sample_rate:
            with self.lock:
                self.sampled_out += 1
            return
        try:
            value = self._encode(
                model, model_version, features, prediction, latency_ms, segment, event_id, timestamp
            )
        except InvalidEventError:
            if self.validator is not None:
                raise
            with self.lock:
                self.invalid += 1
            return
        self.put(options.topic or "", value)

    def _encode(
        self,
        model: Any,
        model_version: Any,
        features: Any,
        prediction: Any,
        latency_ms: Any,
        segment: Any,
        event_id: Any,
        timestamp: Any,
    ) -> bytes:
        if type(model) is not str or not model:
            raise InvalidEventError("model", "must be a non-empty string")
        if type(model_version) is not str or not model_version:
            raise InvalidEventError("model_version", "must be a non-empty string")
        if type(features) is not dict:
            if not isinstance(features, Mapping):
                raise InvalidEventError("features", "must be a mapping of name to value")
            features = dict(features)
        if prediction is None or (isinstance(prediction, float) and not math.isfinite(prediction)):
            raise InvalidEventError("prediction", "must be a finite number, a label or a dict")
        if type(latency_ms) is not float and type(latency_ms) is not int:
            if isinstance(latency_ms, bool | str):
                raise InvalidEventError("latency_ms", "must be a number")
            try:
                latency_ms = float(latency_ms)  # numpy scalars and the like
            except (TypeError, ValueError):
                raise InvalidEventError("latency_ms", "must be a number") from None
        if not (math.isfinite(latency_ms) and latency_ms >= 0):
            raise InvalidEventError("latency_ms", "must be finite and >= 0")
        event: dict[str, Any] = {
            "timestamp": _timestamp(timestamp),
            "model": model,
            "model_version": model_version,
            "features": features,
            "prediction": prediction,
            "latency_ms": latency_ms,
        }
        if segment:
            if not isinstance(segment, Mapping):
                raise InvalidEventError("segment", "must be a mapping of name to string")
            event["segment"] = segment if type(segment) is dict else dict(segment)
        if event_id is not None:
            event["event_id"] = event_id
        try:
            value = orjson.dumps(event, default=_default, option=_DUMPS_OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise InvalidEventError("<event>", f"not serializable as JSON: {exc}") from None
        if len(value) > self.max_event_bytes:
            raise InvalidEventError("<event>", f"{len(value)} bytes > {self.max_event_bytes}")
        if self.validator is not None:
            self.validator(orjson.loads(value))  # what is sent, e.g. NaN features as null
        return value

    def put(self, topic: str, value: bytes) -> None:
        """Append one encoded event; push the oldest out while the queue is over its bounds."""
        with self.lock:
            if not self.accepting:  # closed: counted, never raised
                self.logged += 1
                self.dropped += 1
                return
            items = self.items
            items.append((topic, value))
            self.logged += 1
            self.bytes += len(value)
            if len(items) > self.max_events or self.bytes > self.max_bytes:
                self._shed()
            if self.wake_pending or self.notify is None:
                return
            self.wake_pending = True
            notify = self.notify
        notify()

    def _shed(self) -> None:  # under the lock
        items = self.items
        while len(items) > self.max_events or self.bytes > self.max_bytes:
            _, old = items.popleft()
            self.bytes -= len(old)
            self.dropped += 1
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "inference-event queue full (Kafka slow or unreachable): dropping the oldest "
                "events; %d dropped so far",
                self.dropped,
            )

    # -- the sending loop's side ---------------------------------------------------------------

    def take(self) -> list[tuple[str, bytes]]:
        """Everything queued, in order. O(1) under the lock: callers never wait on a copy."""
        with self.lock:
            self.wake_pending = False
            taken, self.items = self.items, deque()
            self.bytes = 0
        return list(taken)

    def put_back(self, taken: list[tuple[str, bytes]]) -> None:
        """Return events that could not be handed to Kafka to the front; drop what won't fit."""
        with self.lock:
            for item in reversed(taken):
                size = len(item[1])
                if len(self.items) >= self.max_events or self.bytes + size > self.max_bytes:
                    self.dropped += 1  # the oldest event: first to go under drop-oldest
                    continue
                self.items.appendleft(item)
                self.bytes += size

    def abandon(self) -> None:
        """Stop accepting; count what is still queued as dropped."""
        with self.lock:
            self.accepting = False
            self.dropped += len(self.items)
            self.items.clear()
            self.bytes = 0

    def delivered(self, count: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed += count
        else:
            self.sent += count

    def stats(self) -> ProducerStats:
        with self.lock:
            return ProducerStats(
                logged=self.logged,
                sampled_out=self.sampled_out,
                invalid=self.invalid,
                dropped=self.dropped,
                sent=self.sent,
                failed=self.failed,
                queued=len(self.items),
                queued_bytes=self.bytes,
            )


def _timestamp(value: Any) -> int | str:
    """Epoch milliseconds (now by default), an aware datetime, or an RFC 3339 string as is."""
    if value is None:
        return time.time_ns() // 1_000_000
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEventError("timestamp", "a datetime without a timezone is ambiguous")
        return (value - _EPOCH) // _MS
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and value >= 0):
            raise InvalidEventError("timestamp", "epoch milliseconds must be finite and >= 0")
        return int(value)
    if isinstance(value, str):
        return value
    raise InvalidEventError("timestamp", "must be a datetime, epoch milliseconds or RFC 3339")


def _default(value: Any) -> Any:
    """orjson's fallback: numpy-like scalars (``.item()``) and decimals."""
    if isinstance(value, Decimal):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _schema_path() -> Path:
    """The inference-event schema shipped in the package (``driftwire/schemas``)."""
    path = Path(__file__).resolve().parent / "schemas" / _SCHEMA_NAME
    if not path.is_file():
        raise ConfigError("producer.validate", f"{_SCHEMA_NAME} not found next to driftwire")
    return path


def _schema_validator() -> Callable[[Any], None]:
    try:
        import jsonschema
    except ImportError:
        raise ConfigError(
            "producer.validate",
            "development mode needs jsonschema",
            "pip install 'driftwire[dev]' or jsonschema",
        ) from None
    schema = orjson.loads(_schema_path().read_bytes())
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def check(event: Any) -> None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(event))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "<event>"
            raise InvalidEventError(where, error.message)

    return check


# --- the sending loop: drains the queue into aiokafka -----------------------------------------


class _Pump:
    """Connects (retrying while the broker is unreachable) and feeds the queue to aiokafka."""

    def __init__(self, core: _Core, producer_options: dict[str, Any], linger_s: float) -> None:
        self._core = core
        self._options = producer_options
        self._linger_s = linger_s
        self._turn = 0
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._deadline = math.inf
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._producer: AIOKafkaProducer | None = None
        self._last_warning = -math.inf
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def request_close(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop (on the pump's loop)."""
        if self._closing.is_set():
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout
        self._closing.set()
        self._wake.set()
        if self.task is not None and not self.task.done():
            self._deadline_handle = loop.call_at(self._deadline, self.task.cancel)

    async def run(self) -> None:
        cancelled = False
        try:
            await self._serve()
        except asyncio.CancelledError:
            cancelled = True
        finally:
            if self._deadline_handle is not None:
                self._deadline_handle.cancel()
            await self._teardown()
        if cancelled and not self._closing.is_set():
            raise asyncio.CancelledError  # cancelled by someone else: pass it on

    async def _serve(self) -> None:
        backoff = 0.2
        while True:
            producer = AIOKafkaProducer(**self._options)
            try:
                await producer.start()
                break
            except (KafkaError, OSError) as exc:
                await producer.stop()
                self._warn(f"Kafka unreachable ({exc}); retrying, events queue meanwhile")
            except BaseException:  # cancelled at the close deadline: release the client
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
        self._producer = producer
        await self._pump(producer)

    async def _pump(self, producer: AIOKafkaProducer) -> None:
        """Take events off the queue in order, as record batches, one partition per batch.

        Batches are built here (``create_batch`` / ``send_batch``: no per-event future, so
        the loop costs the serving process little CPU) and go to the topic's partitions in
        turn, so a batch fills up instead of spreading thin (Kafka's sticky partitioning).
        """
        core = self._core
        while True:
            if not core.items:
                if self._closing.is_set():
                    return
                self._wake.clear()
                if not core.items:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            if self._linger_s > 0 and len(core.items) < 1000 and not self._closing.is_set():
                await asyncio.sleep(self._linger_s)  # let the batch fill
            await self._send(producer, core.take())

    async def _send(self, producer: AIOKafkaProducer, taken: list[tuple[str, bytes]]) -> None:
        core = self._core
        i = 0
        while i < len(taken):
            topic = taken[i][0]
            builder = producer.create_batch()
            j = i
            while (
                j < len(taken)
                and taken[j][0] == topic
                and builder.append(key=None, value=taken[j][1], timestamp=None) is not None
            ):
                j += 1
            if j == i:  # larger than an empty batch: cannot happen below max_event_bytes
                core.failed += 1
                i += 1
                continue
            try:
                partitions = sorted(await producer.partitions_for(topic))
                self._turn += 1
                partition = partitions[self._turn % len(partitions)]
                future = await producer.send_batch(builder, topic, partition=partition)
            except KafkaTimeoutError:
                # no metadata, or the partition's previous batch is not draining (broker
                # slow or gone): hand everything back; the queue sheds its oldest events
                core.put_back(taken[i:])
                self._warn("Kafka is not accepting events in time; queueing")
                return
            except KafkaError as exc:
                core.failed += j - i
                self._warn(f"events refused by the Kafka client: {exc}")
                i = j
                continue
            future.add_done_callback(functools.partial(core.delivered, j - i))
            i = j

    async def _teardown(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            self._core.abandon()
            return
        remaining = self._deadline - asyncio.get_running_loop().time()
        if self._closing.is_set() and remaining > 0:  # not when cancelled from outside
            with contextlib.suppress(TimeoutError, KafkaError):
                await asyncio.wait_for(producer.flush(), remaining)
        self._core.abandon()
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None:  # give up on what the broker did not take in time
            accumulator.fail_all(KafkaTimeoutError("driftwire producer closed"))
        with contextlib.suppress(KafkaError):
            await producer.stop()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(message)


# --- the public loggers ----------------------------------------------------------------------


class _LoggerBase:
    """What both loggers share: ``log``, ``timed``, ``instrument`` and ``stats``."""

    _core: _Core

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str,
        sample_rate: float,
        models: Mapping[str, ModelOptions] | None,
        validate: bool,
        max_queue_events: int,
        max_queue_bytes: int,
        max_event_bytes: int,
        linger_ms: int,
        compression_type: str | None,
        acks: Literal[0, 1, "all"],
        kafka_options: Mapping[str, Any] | None,
    ) -> None:
        self._core = _Core(
            topic=topic,
            sample_rate=sample_rate,
            models=models or {},
            validate=validate,
            max_queue_events=max_queue_events,
            max_queue_bytes=max_queue_bytes,
            max_event_bytes=max_event_bytes,
        )
        self._linger_s = max(0, linger_ms) / 1000.0  # applied by the pump, which builds batches
        self._producer_options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": "driftwire-producer",
            "acks": acks,
            "linger_ms": 0,
            "compression_type": compression_type,
            "max_batch_size": 256 * 1024,
            "max_request_size": max(1024 * 1024, max_event_bytes + 1024),
            "request_timeout_ms": 30_000,
            **(kafka_options or {}),
        }

    def log(
        self,
        *,
        model: str,
        model_version: str,
        features: Mapping[str, Any],
        prediction: Any,
        latency_ms: float,
        segment: Mapping[str, str] | None = None,
        event_id: str | None = None,
        timestamp: datetime | float | str | None = None,
    ) -> None:
        """Queue one inference event; returns at once and never raises (see the module doc).

        ``timestamp``: an aware datetime, epoch milliseconds or an RFC 3339 string; default
        now. ``prediction``: a number, a label, a bool or ``{"score": ..., "label": ...}``.
        In development mode (``validate=True``) an invalid event raises
        :class:`InvalidEventError`.
        """
        try:
            self._core.log(
                model, model_version, features, prediction, latency_ms, segment, event_id, timestamp
            )
        except InvalidEventError:
            if self._core.validator is not None:
                raise
        except Exception:  # never into the prediction path
            with self._core.lock:
                self._core.invalid += 1
            log.debug("inference event not logged", exc_info=True)

    def timed(
        self,
        *,
        model: str,
        model_version: str,
        features: Mapping[str, Any] | None = None,
        segment: Mapping[str, str] | None = None,
        event_id: str | None = None,
    ) -> Timed:
        """A context manager that measures ``latency_ms`` around a predict call and logs it.

        Set ``.prediction`` (and ``.features`` if not given here) inside the block. Nothing is
        logged when the block raises; the exception goes on unchanged.

        >>> logger = InferenceLogger("localhost:9092", start=False)
        >>> with logger.timed(model="churn", model_version="1", features={"age": 37}) as call:
        ...     call.prediction = 0.83
        >>> call.latency_ms >= 0, logger.stats().queued
        (True, 1)
        >>> _ = logger.close()
        """
        return Timed(self, model, model_version, features, segment, event_id)

    def instrument(
        self,
        *,
        model: str,
        model_version: str,
        features: Callable[..., Mapping[str, Any]] | None = None,
        prediction: Callable[[Any], Any] | None = None,
        segment: Callable[..., Mapping[str, str] | None] | Mapping[str, str] | None = None,
    ) -> Callable[[F], F]:
        """A decorator for a predict function (plain or ``async``) that logs every call.

        ``features(*args, **kwargs)`` picks the features from the call (default: the first
        positional argument); ``prediction(result)`` turns the result into the event's
        prediction (default: the result itself); ``segment`` is a mapping or a function of the
        call's arguments. A failing picker counts as an invalid event, never as an error.
        """

        def pick(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
            feats: Any
            if features is not None:
                feats = features(*args, **kwargs)
            else:
                feats = args[0] if args else kwargs.get("features")
            seg = segment(*args, **kwargs) if callable(segment) else segment
            return feats, seg

        def record(started: float, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            latency = (time.perf_counter() - started) * 1000.0
            try:
                feats, seg = pick(args, kwargs)
                pred = prediction(out) if prediction is not None else out
            except Exception:
                with self._core.lock:
                    self._core.invalid += 1
                log.debug("features or prediction could not be picked", exc_info=True)
                return
            self.log(
                model=model,
                model_version=model_version,
                features=feats,
                prediction=pred,
                latency_ms=latency,
                segment=seg,
            )

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    started = time.perf_counter()
                    out = await cast(Callable[..., Awaitable[Any]], fn)(*args, **kwargs)
                    record(started, args, kwargs, out)
                    return out

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                out = fn(*args, **kwargs)
                record(started, args, kwargs, out)
                return out

            return cast(F, wrapper)

        return decorate

    def stats(self) -> ProducerStats:
        """A snapshot of the counters (see :class:`ProducerStats`)."""
        return self._core.stats()

    @property
    def dropped(self) -> int:
        """Events lost to back-pressure so far (the queue's drop-oldest policy)."""
        return self._core.dropped


class Timed:
    """One measured predict call (see :meth:`InferenceLogger.timed`)."""

    __slots__ = (
        "_logger",
        "_started",
        "event_id",
        "features",
        "latency_ms",
        "model",
        "model_version",
        "prediction",
        "segment",
    )

    def __init__(
        self,
        logger: _LoggerBase,
        model: str,
        model_version: str,
        features: Mapping[str, Any] | None,
        segment: Mapping[str, str] | None,
        event_id: str | None,
    ) -> None:
        self._logger = logger
        self.model = model
        self.model_version = model_version
        self.features = features
        self.segment = segment
        self.event_id = event_id
        self.prediction: Any = None
        self.latency_ms: float | None = None
        self._started = 0.0

    def __enter__(self) -> Timed:
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.latency_ms = (time.perf_counter() - self._started) * 1000.0
        if exc_type is not None:
            return
        self._logger.log(
            model=self.model,
            model_version=self.model_version,
            features=self.features if self.features is not None else {},
            prediction=self.prediction,
            latency_ms=self.latency_ms,
            segment=self.segment,
            event_id=self.event_id,
        )


class InferenceLogger(_LoggerBase):
    """Log inference events to Kafka from any Python code (threads welcome).

    A daemon thread runs an asyncio loop with an aiokafka producer; ``log`` only appends to a
    bounded queue. ``close(timeout)`` delivers what is queued within ``timeout`` seconds and
    stops the thread; it also runs at interpreter exit (``atexit``) unless called before.
    Create the logger after forking (in each worker process of a pre-forking server).

    ``models`` gives per-model :class:`ModelOptions` (sampling rate, topic). ``kafka_options``
    go to :class:`aiokafka.AIOKafkaProducer` as they are (security settings, timeouts).
    ``compression_type``: ``gzip`` (the standard library's zlib, which compresses outside the
    GIL), ``None`` to save that CPU, or ``lz4`` / ``zstd`` / ``snappy`` with aiokafka's
    extras installed. ``start=False`` creates no thread (events queue until ``start()``).
    """

    def __init__(
        self,
        bootstrap_servers: str = "localhost:9092",
        *,
        topic: str = "inference-events",
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
        close_timeout: float = 5.0,
        start: bool = True,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            topic=topic,
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
    ) -> None:
        super().__init__(
            bootstrap_servers,
            topic=topic,
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
