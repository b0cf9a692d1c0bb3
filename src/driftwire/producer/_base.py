"""What both inference loggers share: ``log``, ``timed``, ``instrument`` and ``stats``.

The lifecycle (a thread of its own, or a task on the caller's loop) is in
:mod:`driftwire.producer`; the queue and the counters are in :mod:`driftwire.producer._queue`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from driftwire.producer._event import InvalidEventError
from driftwire.producer._queue import ModelOptions, ProducerStats, _Core
from driftwire.producer.security import KafkaSecurity

log = logging.getLogger("driftwire.producer")  # one logger name for the whole producer

F = TypeVar("F", bound=Callable[..., Any])


class _LoggerBase:
    """What both loggers share: ``log``, ``timed``, ``instrument`` and ``stats``."""

    _core: _Core

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str,
        labels_topic: str,
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
        security: KafkaSecurity | None = None,
        enable_idempotence: bool | None = None,
    ) -> None:
        self._core = _Core(
            topic=topic,
            labels_topic=labels_topic,
            sample_rate=sample_rate,
            models=models or {},
            validate=validate,
            max_queue_events=max_queue_events,
            max_queue_bytes=max_queue_bytes,
            max_event_bytes=max_event_bytes,
        )
        self._linger_s = max(0, linger_ms) / 1000.0  # applied by the pump, which builds batches
        idempotent = acks == "all" if enable_idempotence is None else enable_idempotence
        self._producer_options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": "driftwire-producer",
            "acks": acks,
            # idempotent by default: a retried send is never written twice (needs acks="all")
            "enable_idempotence": idempotent,
            "linger_ms": 0,
            "compression_type": compression_type,
            "max_batch_size": 256 * 1024,
            "max_request_size": max(1024 * 1024, max_event_bytes + 1024),
            "request_timeout_ms": 30_000,
            **(security.client_options() if security is not None else {}),
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
    ) -> str | None:
        """Queue one inference event; returns at once and never raises (see the module doc).

        ``timestamp``: an aware datetime, epoch milliseconds or an RFC 3339 string; default
        now. ``prediction``: a number, a label, a bool or ``{"score": ..., "label": ...}``.
        ``event_id``: the prediction's id, which its ground truth will carry
        (:meth:`log_ground_truth`); a random one (32 hex digits) when not given. Returns the
        id the event was queued with, or None when it was not queued (sampled out, invalid).
        In development mode (``validate=True``) an invalid event raises
        :class:`InvalidEventError`.
        """
        try:
            return self._core.log(
                model, model_version, features, prediction, latency_ms, segment, event_id, timestamp
            )
        except InvalidEventError:
            if self._core.validator is not None:
                raise
        except Exception:  # never into the prediction path
            with self._core.lock:
                self._core.invalid += 1
            log.debug("inference event not logged", exc_info=True)
        return None

    def log_ground_truth(
        self,
        *,
        event_id: str,
        model: str,
        actual: str | bool | float,
        model_version: str | None = None,
        observed_at: datetime | float | str | None = None,
        prediction_timestamp: datetime | float | str | None = None,
    ) -> bool:
        """Queue the known outcome of an earlier prediction on the labels topic.

        ``event_id``: the id :meth:`log` returned (or was given) for that prediction;
        ``actual``: the true class label (a string or bool) or regression target (a number);
        ``observed_at``: when the outcome became known (default now). Returns False when the
        record was refused (counted as invalid; raised in development mode); never raises
        otherwise. The record needs no key: driftwire joins labels to predictions by
        ``event_id`` whatever partition they arrive on.

        >>> from driftwire.producer import InferenceLogger
        >>> logger = InferenceLogger("localhost:9092", start=False)
        >>> event_id = logger.log(model="churn", model_version="1", features={"age": 37},
        ...                       prediction=0.83, latency_ms=4.0)
        >>> len(event_id), logger.log_ground_truth(event_id=event_id, model="churn", actual=True)
        (32, True)
        >>> logger.stats().queued
        2
        >>> _ = logger.close()
        """
        try:
            return self._core.label(
                event_id, model, actual, model_version, observed_at, prediction_timestamp
            )
        except InvalidEventError:
            if self._core.label_validator is not None:
                raise
        except Exception:
            with self._core.lock:
                self._core.invalid += 1
            log.debug("ground truth not logged", exc_info=True)
        return False

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

        >>> from driftwire.producer import InferenceLogger
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
        self.event_id = self._logger.log(
            model=self.model,
            model_version=self.model_version,
            features=self.features if self.features is not None else {},
            prediction=self.prediction,
            latency_ms=self.latency_ms,
            segment=self.segment,
            event_id=self.event_id,
        )
