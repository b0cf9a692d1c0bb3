"""The producer's core: sampling, the bounded drop-oldest queue and the counters.

Pure and thread-safe, no I/O: callers on any thread append encoded events under one lock;
the sending loop (:mod:`driftwire.producer._send`) takes them all at once and reports
deliveries back. The queue is bounded by events and by bytes; when it is full the oldest
events are pushed out and counted, with a warning at most once a minute.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from driftwire.errors import ConfigError
from driftwire.producer._event import InvalidEventError, _encode, _encode_label
from driftwire.producer._schema import LABEL_SCHEMA, _schema_validator

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("driftwire.producer")  # one logger name for the whole producer

_WARN_EVERY_S = 60.0


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


class _Core:
    """Sampling, the bounded queue and the counters; events are built by :func:`_encode`."""

    def __init__(
        self,
        *,
        topic: str,
        labels_topic: str,
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
        self.labels_topic = labels_topic
        self.validator: Callable[[Any], None] | None = _schema_validator() if validate else None
        self.label_validator = _schema_validator(LABEL_SCHEMA) if validate else None
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
    ) -> str | None:
        """Queue one event; its id (the caller's, or a new random one), None if not queued."""
        options = self.models.get(model, self.default) if type(model) is str else self.default
        if options.sample_rate < 1.0 and self._random() >= options.sample_rate:
            with self.lock:
                self.sampled_out += 1
            return None
        if event_id is None:
            event_id = os.urandom(16).hex()
        try:
            value = _encode(
                model,
                model_version,
                features,
                prediction,
                latency_ms,
                segment,
                event_id,
                timestamp,
                max_event_bytes=self.max_event_bytes,
                validator=self.validator,
            )
        except InvalidEventError:
            if self.validator is not None:
                raise
            with self.lock:
                self.invalid += 1
            return None
        self.put(options.topic or "", value)
        return event_id

    def label(
        self,
        event_id: str,
        model: str,
        actual: Any,
        model_version: str | None,
        observed_at: datetime | float | str | None,
        prediction_timestamp: datetime | float | str | None,
    ) -> bool:
        """Queue one ground-truth record on the labels topic; False if it was refused."""
        try:
            value = _encode_label(
                event_id,
                model,
                actual,
                model_version,
                observed_at,
                prediction_timestamp,
                max_event_bytes=self.max_event_bytes,
                validator=self.label_validator,
            )
        except InvalidEventError:
            if self.label_validator is not None:
                raise
            with self.lock:
                self.invalid += 1
            return False
        self.put(self.labels_topic, value)
        return True

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
