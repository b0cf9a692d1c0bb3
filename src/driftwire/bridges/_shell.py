"""The consumer shell every bridge target runs in.

One consumer group per target on the alerts topic. Each record is handled in order: checked
(a record that is no alert goes to the dead-letter topic), routed (``bridges.routes``),
de-duplicated (an alert whose status was already delivered for its fingerprint is not sent
again: no second page for one alert), delivered with retries, or dead-lettered with the
reason in headers when it cannot be delivered; only then is its offset committed. Nothing is
lost silently: every record ends delivered, skipped for a stated reason, or dead-lettered.

State: per partition, the last delivered status and alert of every fingerprint (the alerts
topic is keyed by fingerprint, so an alert's emissions stay in one partition). When a
partition is assigned, its history up to the committed offset is read again to rebuild that
state (the de-duplication and Alertmanager's re-sends survive restarts and rebalances). A
target's group that has never committed starts from the current state: the history is read
as state, the alerts still firing are delivered, and past firing/resolved pairs are not.

At-least-once: a crash between a delivery and its commit delivers that alert once more when
the partition is read again (PagerDuty merges the repeat by ``dedup_key``).

Observability: every outcome is counted in :class:`~driftwire.ops.metrics.BridgeMetrics`; a
monitor task samples the lag of the assigned partitions every second and judges liveness (the
consume loop reports progress on every poll, record and HTTP attempt) into ``readiness``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from prometheus_client import CollectorRegistry

from driftwire.bridges._alert import AlertEvent, BadAlert, epoch_ms, parse_alert
from driftwire.bridges._delivery import Outcome, Request, RetryPolicy, Stopped, post
from driftwire.decode.batch import Rejection
from driftwire.decode.deadletter import SourceRecord, dead_letter_headers
from driftwire.ops.config import BridgeRoute, Settings
from driftwire.ops.health import Liveness, Readiness
from driftwire.ops.lifecycle import Lifecycle
from driftwire.ops.metrics import BridgeMetrics

log = logging.getLogger(__name__)


def https_context(cafile: str | None) -> ssl.SSLContext:
    """Verification on (hostname and chain): the system's CAs, plus ``cafile`` if given."""
    context = ssl.create_default_context()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    return context


MONITOR_INTERVAL_S = 1.0


class Target(Protocol):
    """What a bridge target provides: requests for an alert, and periodic re-sends."""

    name: str
    resend_interval_s: float | None

    def render(self, alert: AlertEvent, now_ms: int) -> list[Request]: ...
    def resend(self, alerts: Sequence[AlertEvent], now_ms: int) -> list[Request]: ...


def route_matches(route: BridgeRoute | None, alert: AlertEvent) -> bool:
    """Whether a target with ``route`` takes ``alert`` (no route: every alert)."""
    if route is None:
        return True
    if route.severities and alert.severity not in route.severities:
        return False
    return not (route.kinds and alert.kind not in route.kinds)


@dataclass(slots=True)
class _Known:
    status: str
    alert: AlertEvent
    record: ConsumerRecord
    delivered: bool


@dataclass(frozen=True, slots=True)
class _Replay:
    until: int  # exclusive
    fresh: bool  # the group had no committed offset: nothing before ``until`` was delivered


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, shell: BridgeShell) -> None:
        self._shell = shell

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._shell.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._shell.on_assigned(assigned)


class BridgeShell:
    """Runs one target. Lifecycle: ``await run(stop)`` until ``stop`` is set; not restartable.

    ``counts`` says what happened to every record: ``delivered``, ``duplicate``,
    ``routed_out``, ``dead_lettered`` (by reason in ``dead_letter_reasons``), ``resent``,
    ``resend_failed``. ``metrics`` exports the same (and more) to Prometheus; ``readiness``
    is what ``/readyz`` and ``/healthz`` report.
    """

    def __init__(
        self,
        settings: Settings,
        target: Target,
        *,
        clock: Callable[[], float] = time.time,
        metrics: BridgeMetrics | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        b = settings.bridges
        self._s = settings
        self._target = target
        self._clock = clock
        self.group = f"{b.group_id_prefix}-{target.name}"
        self.dead_letter_topic = b.dead_letter or f"{settings.topics.alerts}.dlq"
        self._route = next((r for t, r in b.routes.items() if t == target.name), None)
        self._policy = RetryPolicy(
            max_attempts=b.max_attempts,
            initial_s=b.backoff_initial_seconds,
            max_s=b.backoff_max_seconds,
            timeout_s=b.request_timeout_seconds,
        )
        self.metrics = metrics or BridgeMetrics(CollectorRegistry(), target.name)
        self.readiness = readiness or Readiness()
        self.readiness.details.update(target=target.name, group=self.group)
        # one step of the loop lasts at most one HTTP request or one backoff delay
        step_s = self._policy.timeout_s + self._policy.max_s
        self.liveness = Liveness(timeout_s=max(settings.http.liveness_timeout_seconds, 2 * step_s))
        self._done: dict[TopicPartition, int] = {}  # next offset to handle (committed)
        self._state: dict[int, dict[str, _Known]] = {}
        self._replay: dict[TopicPartition, _Replay] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stop = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.dead_letter_reasons: Counter[str] = Counter()
        self.assigned = asyncio.Event()  # set once partitions are assigned and state rebuilt
        self._fatal: BaseException | None = None
        self._life = Lifecycle(f"{target.name} bridge")

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._life.start()
        self._stop = stop
        opts = self._s.kafka.client_options()
        if self._s.topics.create:
            await self._ensure_dead_letter_topic()
        poll_ms = int(max(300.0, 2 * self._policy.budget_s) * 1000)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=https_context(self._s.bridges.ssl_cafile))
        )
        self._producer = AIOKafkaProducer(**opts, acks="all", enable_idempotence=True)
        self._consumer = AIOKafkaConsumer(
            **opts,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=poll_ms,
            session_timeout_ms=self._s.consumer.session_timeout_ms,
        )
        resender: asyncio.Task[None] | None = None
        monitor: asyncio.Task[None] | None = None
        try:
            await self._producer.start()
            await self._consumer.start()
            self.readiness.broker_reachable = True
            self._progress()
            self._consumer.subscribe([self._s.topics.alerts], listener=_Listener(self))
            monitor = asyncio.create_task(self._monitor_loop())
            if self._target.resend_interval_s:
                resender = asyncio.create_task(self._resend_loop(self._target.resend_interval_s))
            log.info(
                "bridge started",
                extra={"fields": {"target": self._target.name, "group": self.group}},
            )
            await self._loop()
        finally:
            self.readiness.broker_reachable = False
            for task in (resender, monitor):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            await self._consumer.stop()  # leaves the group
            await self._producer.stop()
            await self._session.close()
            self._life.stop()
            log.info(
                "bridge stopped",
                extra={"fields": {"target": self._target.name, **self.counts}},
            )

    async def _ensure_dead_letter_topic(self) -> None:
        admin = AIOKafkaAdminClient(**self._s.kafka.client_options())
        await admin.start()
        try:
            if self.dead_letter_topic in set(await admin.list_topics()):
                return
            brokers = len((await admin.describe_cluster())["brokers"])
            rf = self._s.topics.replication_factor or min(3, max(1, brokers))
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(self.dead_letter_topic, 1, rf)])
        finally:
            await admin.close()

    async def _loop(self) -> None:
        consumer = self._consumer
        if consumer is None:
            raise self._life.not_started("consumer")
        while not self._stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            if self._fatal is not None:
                raise self._fatal
            self._progress()
            try:
                for tp, records in batches.items():
                    for record in records:
                        if self._stop.is_set():
                            return  # the rest is read again by the next run
                        if tp not in consumer.assignment():
                            break  # lost in a failed commit: the new owner reads it again
                        await self._handle(tp, record)
                        self._progress()
                await self._finish_replays()
            except Stopped:
                return  # the record being delivered is not committed: read again later

    # -- rebalances ------------------------------------------------------------------------

    def forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._state.pop(tp.partition, None)
            self._replay.pop(tp, None)
            if self._done.pop(tp, None) is not None:
                with contextlib.suppress(KeyError):
                    self.metrics.consumer_lag.remove(self._target.name, str(tp.partition))

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Rebuild each new partition's state: seek to its beginning, replay to the commit.

        The new partitions are paused meanwhile: aiokafka activates an assignment before this
        listener runs, and records fetched before the state is rebuilt must not be handled.
        Every partition is then positioned explicitly, so nothing fetched early is skipped.
        """
        consumer = self._consumer
        if consumer is None:
            raise self._life.not_started("consumer")
        if not assigned:
            self.sample()
            self.assigned.set()
            return
        consumer.pause(*assigned)
        try:
            await self._rebuild(consumer, assigned)
        except Exception as exc:  # aiokafka would only log it: stop the bridge instead
            self._fatal = exc
            self._stop.set()
            raise
        finally:
            consumer.resume(*assigned)
        self.sample()
        self.assigned.set()

    async def _rebuild(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        beginning = await consumer.beginning_offsets(assigned)
        end = await consumer.end_offsets(assigned)
        for tp in assigned:
            self._state[tp.partition] = {}
            committed = await consumer.committed(tp)
            fresh = committed is None
            until = end[tp] if committed is None else committed
            if until > beginning[tp]:
                consumer.seek(tp, beginning[tp])
                self._replay[tp] = _Replay(until, fresh)
            else:
                consumer.seek(tp, max(until, beginning[tp]))
            self._done[tp] = max(until, beginning[tp])
            log.info(
                "partition assigned",
                extra={
                    "fields": {
                        "target": self._target.name,
                        "partition": tp.partition,
                        "committed": committed,
                        "replay_until": until if tp in self._replay else None,
                    }
                },
            )

    # -- records ---------------------------------------------------------------------------

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        replay = self._replay.get(tp)
        if replay is not None:
            if record.offset < replay.until:
                self._fold(tp, record, delivered=not replay.fresh)
                return
            await self._finish_replay(tp)
        await self._process(tp, record)

    def _fold(self, tp: TopicPartition, record: ConsumerRecord, *, delivered: bool) -> None:
        """Take one already handled (or, for a fresh group, historic) record into the state."""
        try:
            alert = parse_alert(record.value)
        except BadAlert:
            return  # dead-lettered when it was first read
        if not route_matches(self._route, alert):
            return
        self._state.setdefault(tp.partition, {})[alert.fingerprint] = _Known(
            alert.status, alert, record, delivered or not alert.firing
        )

    async def _finish_replays(self) -> None:
        consumer = self._consumer
        if consumer is None:
            raise self._life.not_started("consumer")
        for tp, replay in list(self._replay.items()):
            if tp in consumer.assignment() and await consumer.position(tp) >= replay.until:
                await self._finish_replay(tp)

    async def _finish_replay(self, tp: TopicPartition) -> None:
        replay = self._replay.pop(tp)
        if not replay.fresh:
            return
        # a new group: deliver what fires now, then start after the history
        for known in list(self._state.get(tp.partition, {}).values()):
            if known.delivered:
                continue
            outcome = await self._deliver(known.alert)
            if outcome.ok:
                known.delivered = True
            else:
                await self._dead_letter(tp, known.record, outcome.reason, outcome.message)
        await self._commit(tp, replay.until)

    async def _process(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        try:
            alert = parse_alert(record.value)
        except BadAlert as bad:
            await self._dead_letter(tp, record, "invalid_alert", f"{bad.reason}: {bad}")
            await self._commit(tp, record.offset + 1)
            return
        if not route_matches(self._route, alert):
            self.counts["routed_out"] += 1
            self.metrics.skipped.labels(self._target.name, "routed_out").inc()
            await self._commit(tp, record.offset + 1)
            return
        state = self._state.setdefault(tp.partition, {})
        known = state.get(alert.fingerprint)
        if known is not None and known.delivered and known.status == alert.status:
            # a re-emission or a replay of what was delivered: no second page
            self.counts["duplicate"] += 1
            self.metrics.skipped.labels(self._target.name, "duplicate").inc()
            known.alert, known.record = alert, record  # fresher values for re-sends
            await self._commit(tp, record.offset + 1)
            return
        outcome = await self._deliver(alert)
        if outcome.ok:
            state[alert.fingerprint] = _Known(alert.status, alert, record, True)
        else:
            await self._dead_letter(tp, record, outcome.reason, outcome.message)
        await self._commit(tp, record.offset + 1)

    async def _post(self, request: Request) -> Outcome:
        """One request to the target, with the retry policy; attempts are counted."""
        if self._session is None:
            raise self._life.not_started("HTTP session")
        return await post(
            self._session,
            request,
            self._policy,
            self._stop,
            what=self._target.name,
            on_attempt=self._attempted,
        )

    async def _deliver(self, alert: AlertEvent) -> Outcome:
        if self._session is None:
            raise self._life.not_started("HTTP session")
        outcome = Outcome(True, 0)
        started = time.perf_counter()
        for request in self._target.render(alert, int(self._clock() * 1000)):
            outcome = await self._post(request)
            if not outcome.ok:
                break
        self._observe(alert, outcome, time.perf_counter() - started)
        fields = {
            "target": self._target.name,
            "fingerprint": alert.fingerprint,
            "status": alert.status,
            "attempts": outcome.attempts,
        }
        if outcome.ok:
            self.counts["delivered"] += 1
            log.info("alert delivered", extra={"fields": fields})
        else:
            log.warning(
                "alert not delivered",
                extra={"fields": {**fields, "reason": outcome.reason, "error": outcome.message}},
            )
        return outcome

    async def _dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord, reason: str, message: str
    ) -> None:
        """Send the record, unchanged, to the dead-letter topic and wait for the broker's ack."""
        if self._producer is None:
            raise self._life.not_started("producer")
        headers = dead_letter_headers(
            Rejection(0, reason, None, message),
            SourceRecord(tp.topic, tp.partition, record.offset, record.timestamp),
            group=self.group,
            stage=f"bridge-{self._target.name}",
            now_ms=int(self._clock() * 1000),
            original=tuple(record.headers or ()),
        )
        future = await self._producer.send(
            self.dead_letter_topic, value=record.value, key=record.key, headers=headers
        )
        await future  # a failure here stops the bridge before the commit: nothing is lost
        self.counts["dead_lettered"] += 1
        self.metrics.dead_letters.labels(self._target.name, reason).inc()
        self.dead_letter_reasons[reason] += 1

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        if self._consumer is None:
            raise self._life.not_started("consumer")
        try:
            await self._consumer.commit({tp: OffsetAndMetadata(offset, "")})
            if tp in self._done:
                self._done[tp] = offset
        except CommitFailedError:
            log.warning(
                "commit failed after a rebalance; the partition's new owner reads it again",
                extra={"fields": {"target": self._target.name, "partition": tp.partition}},
            )
            self.forget([tp])

    # -- re-sends --------------------------------------------------------------------------

    def firing(self) -> list[AlertEvent]:
        """The alerts this bridge delivered as firing and has not seen resolved."""
        return [
            known.alert
            for state in self._state.values()
            for known in state.values()
            if known.status == "firing" and known.delivered
        ]

    async def _resend_loop(self, interval_s: float) -> None:
        if self._session is None:
            raise self._life.not_started("HTTP session")
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval_s)
                return
            alerts = self.firing()
            for request in self._target.resend(alerts, int(self._clock() * 1000)):
                try:
                    outcome = await self._post(request)
                except Stopped:
                    return
                if outcome.ok:
                    self.counts["resent"] += 1
                    self.metrics.resends.labels(self._target.name, "ok").inc()
                else:  # the next interval tries again; the alert itself was delivered
                    self.counts["resend_failed"] += 1
                    self.metrics.resends.labels(self._target.name, "failed").inc()
                    log.warning(
                        "re-send failed",
                        extra={"fields": {"target": self._target.name, "error": outcome.message}},
                    )

    # -- observability ---------------------------------------------------------------------

    def _progress(self) -> None:
        now = self._clock()
        self.liveness.progress(now)
        self.metrics.last_progress.labels(self._target.name).set(now)

    def _attempted(self, attempt: int, status: int | None) -> None:
        self.metrics.request(attempt, status)
        self._progress()  # retrying a receiver that is down is progress, not a hang

    def _observe(self, alert: AlertEvent, outcome: Outcome, seconds: float) -> None:
        m, name = self.metrics, self._target.name
        m.delivery_seconds.labels(name).observe(seconds)
        if not outcome.ok:
            m.deliveries.labels(name, alert.status, outcome.reason).inc()
            return
        m.deliveries.labels(name, alert.status, "delivered").inc()
        now = self._clock()
        m.last_delivery.labels(name).set(now)
        evaluated = alert.event.get("time")
        if isinstance(evaluated, str):
            with contextlib.suppress(ValueError):
                m.alert_age.labels(name).observe(max(0.0, now - epoch_ms(evaluated) / 1000))

    def sample(self) -> int:
        """Update the lag and partition gauges and ``readiness``; returns the total lag."""
        consumer = self._consumer
        if consumer is None:
            return 0
        name = self._target.name
        assigned = consumer.assignment()
        total = 0
        for tp in assigned:
            done, end = self._done.get(tp), consumer.highwater(tp)
            if done is None or end is None:
                continue  # not rebuilt or not fetched yet
            lag = max(0, end - done)
            total += lag
            self.metrics.consumer_lag.labels(name, str(tp.partition)).set(lag)
        self.metrics.assigned_partitions.labels(name).set(len(assigned))
        self.readiness.assigned = len(assigned)
        self.readiness.stuck = self.liveness.stuck(self._clock(), len(assigned), total)
        return total

    async def _monitor_loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), MONITOR_INTERVAL_S)
