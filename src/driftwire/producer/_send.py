"""The sending loop: drains the producer's queue into aiokafka, on an asyncio loop.

It runs in the logger's own thread (:class:`~driftwire.producer.InferenceLogger`) or on the
caller's loop (:class:`~driftwire.producer.AsyncInferenceLogger`). It connects, retrying while
the broker is unreachable, builds record batches itself and hands them back to the queue when
Kafka does not take them in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from driftwire.producer._queue import _WARN_EVERY_S, _Core
from driftwire.producer._quiet import limit_aiokafka_logging

log = logging.getLogger("driftwire.producer")  # one logger name for the whole producer


class _Pump:
    """Connects (retrying while the broker is unreachable) and feeds the queue to aiokafka."""

    def __init__(self, core: _Core, producer_options: dict[str, Any], linger_s: float) -> None:
        limit_aiokafka_logging()  # an unreachable broker: one line a minute, not one a second
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
            except ClusterAuthorizationFailedError:
                # an idempotent producer's id: refused when the principal may write to no topic
                await producer.stop()
                self._refuse_queued()
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
            except TopicAuthorizationFailedError:
                core.failed += j - i
                self._warn(self._not_authorized(topic))
                i = j
                continue
            except KafkaError as exc:
                core.failed += j - i
                self._warn(f"events refused by the Kafka client: {exc}")
                i = j
                continue
            future.add_done_callback(functools.partial(core.delivered, j - i))
            future.add_done_callback(functools.partial(self._check_refused, topic))
            i = j

    def _refuse_queued(self) -> None:
        """The broker refused the producer itself: what is queued cannot be sent, and is
        counted as failed, as events refused for a topic's ACL are (the next attempt to
        connect may find the ACLs granted)."""
        taken = self._core.take()
        self._core.failed += len(taken)
        topics = ", ".join(dict.fromkeys(topic for topic, _ in taken)) or "its events topic"
        self._warn(self._not_authorized(topics))

    def _check_refused(self, topic: str, future: asyncio.Future[Any]) -> None:
        """A batch the broker refused for want of an ACL: say which, once a minute."""
        if not future.cancelled() and isinstance(future.exception(), TopicAuthorizationFailedError):
            self._warn(self._not_authorized(topic))

    def _not_authorized(self, topic: str) -> str:
        """The same line the worker ends with when an ACL is missing (its events are lost:
        the broker will not take them until the ACLs change)."""
        options = self._options
        protocol = str(options.get("security_protocol", "PLAINTEXT"))
        who = "User:ANONYMOUS"
        if protocol.startswith("SASL"):
            who = f"User:{options.get('sasl_plain_username')}"
        elif protocol == "SSL":
            who = "the principal of the client certificate"
        return (
            f"Kafka: {who} is not authorized: it needs Write and Describe on topic {topic} "
            "(the ACL table in docs/security.md lists them all); events to it are counted "
            "as failed"
        )

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
