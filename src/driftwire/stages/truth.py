"""The ground-truth stage on Kafka: predictions and labels in, performance alerts out.

One consumer-group member reads every partition of the events and labels topics (the group's
assignor gives all of them to one member; the others stand by and take over when it leaves),
so a label always meets its prediction whatever partitions the serving stack used. The state
(the pending join, per-bucket performance, references, alert policy) is not stored: on every
assignment the stage rebuilds it by re-reading both topics from ``horizon + window + the
oldest judgement age`` ago (by record time; windows are judged again as their labels arrive,
up to the horizon after they end). The pure tracker is deterministic in its input
order, so a rebuild emits the alert transitions of the first run again, with the same
fingerprints, and with the same CloudEvents ids where the two topics' records interleave as
they did before (across partitions the fetch order can differ, and then an alert can come
one window earlier or later, or at another severity). Those are not sent again: before the
rebuild sends anything, the stage reads the alerts topic's records of the same span to its end
(:func:`read_sent_alerts`) and keeps the latest transition of each fingerprint of its alert
kinds (:class:`~driftwire.truth.sent.SentAlerts`);
a transition is sent only when it is evaluated after that one and changes its status. This
holds after a SIGKILL too (nothing is kept but the topic): a transition the killed run did
not get to send is sent by the next, one it sent is not sent again, and no fingerprint gets
the same status twice in a row. Offsets are committed after the alerts of a batch are
acknowledged, for lag monitoring; a restart does not resume from them.

Baselines: the stage follows the compacted baselines topic as the detect stage does (read to
its end before the first fetch, for up to ``truth.baselines_wait_seconds``); a baseline built
with ``--target-column`` carries the model's realized performance on the reference, which then
replaces the reference the tracker would freeze from the first labels, and calibrates the
estimated performance.

Invalid ground-truth records go to ``<labels>.dlq`` with the decoder's reason headers; invalid
events are left to the profile stage, which dead-letters them already.

The partitions are read in whatever order the fetches return them (one can be read to its end
before another is started): the tracker's clock is held at the event time every partition with
records to come has reached (:class:`~driftwire.truth.inputs.InputClock`), so the alerts are
those of the stream read in time order. Every wait for the broker is bounded
(:data:`BROKER_WAIT_S`; a fetch by the group's poll interval besides, for a rebalance): one
that runs out ends the stage with one line naming what it waited for, never a silent stall;
a refused offset commit (they serve lag monitoring only) is logged and the stage goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Iterable, Mapping
from datetime import datetime
from typing import TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

from driftwire.alerts.alert import Alert, encode
from driftwire.decode.batch import Rejection
from driftwire.decode.deadletter import SourceRecord, dead_letter_headers
from driftwire.decode.decoder import decode_batch
from driftwire.detect.reference import ReferenceStore
from driftwire.errors import FormatError, TransportError
from driftwire.ops.config import Settings
from driftwire.ops.truth_metrics import ALERT_KINDS, TruthMetrics
from driftwire.profiling.catalog import segment_key
from driftwire.stages.detect._baselines import BaselinesFollower
from driftwire.truth.inputs import InputClock
from driftwire.truth.join import Prediction
from driftwire.truth.label import decode_label
from driftwire.truth.reference import ReferencePerformance
from driftwire.truth.sent import SentAlerts
from driftwire.truth.staged_policy import age_label
from driftwire.truth.tracker import TrackerSettings, TruthTracker

log = logging.getLogger(__name__)

STAGE = "truth"
UNSEGMENTED = "all"
#: how long one call to the broker may take before the stage fails saying what it waited for
#: (above aiokafka's own request timeout of 40 s, so that its errors come first)
BROKER_WAIT_S = 60.0

_T = TypeVar("_T")


async def bounded(waited: Awaitable[_T], seconds: float, what: str) -> _T:
    """``waited``, or a :class:`~driftwire.errors.TransportError` that names ``what`` the stage
    waited for when it takes more than ``seconds`` (or aiokafka gives up waiting first): a
    stalled broker call ends the stage with one line, never a silent wait.

    >>> async def never() -> None:
    ...     await asyncio.Event().wait()
    >>> asyncio.run(bounded(never(), 0.01, "the end offsets of alerts"))
    Traceback (most recent call last):
    ...
    driftwire.errors.TransportError: truth stage: the end offsets of alerts: no answer in 0.01 s
    """
    try:
        return await asyncio.wait_for(waited, timeout=seconds)
    except TimeoutError:
        raise TransportError(f"truth stage: {what}: no answer in {seconds:g} s") from None
    except KafkaTimeoutError as exc:
        raise TransportError(f"truth stage: {what}: the broker did not answer ({exc})") from None


class AllToOneAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """Every partition of every subscribed topic to one member (the first by id): a join that
    needs all of them in one place, with hot standbys."""

    name = "driftwire-all-to-one"
    version = 0

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for m in members.values() for t in m.subscription})
        owner = min(members)
        partitions = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
        return {
            member: ConsumerProtocolMemberAssignment(
                cls.version, partitions if member == owner else [], b""
            )
            for member in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: TruthStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass  # nothing to flush: the state is rebuilt on the next assignment

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._stage.on_assigned(assigned)


class TruthStage:
    """The ground-truth stage of one worker process; ``await run(stop)`` until ``stop``."""

    def __init__(self, settings: Settings, metrics: TruthMetrics) -> None:
        self._s = settings
        self._m = metrics
        self._tracker = TruthTracker(settings.truth.tracker_settings())
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._inflight: list[Awaitable[Prediction | ConsumerRecord]] = []
        self._rebuild_due: list[TopicPartition] | None = None  # a new assignment, not rebuilt
        self._inputs = InputClock()  # the latest event time read, per partition
        self._commit_failed = False  # said once until a commit succeeds again
        self._references = ReferenceStore()
        self._baselines = BaselinesFollower(
            settings, self._references, metrics, client_suffix="truth-baselines"
        )
        self._applied: dict[tuple[str, str], str] = {}  # baseline ids the tracker judges by
        self._max_future_ms = int(settings.profile.max_future_seconds * 1000)
        self._sent = SentAlerts()
        self.alerts_sent = 0
        #: transitions of a rebuild left unsent because the alerts topic holds them already
        self.alerts_withheld = 0

    @property
    def tracker(self) -> TruthTracker:
        return self._tracker

    async def run(self, stop: asyncio.Event) -> None:
        s = self._s
        opts = s.kafka.client_options()
        self._producer = AIOKafkaProducer(**opts, acks="all", enable_idempotence=True)
        self._consumer = AIOKafkaConsumer(
            **opts,
            group_id=s.truth.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(AllToOneAssignor,),
            max_poll_interval_ms=s.consumer.max_poll_interval_ms,
            session_timeout_ms=s.consumer.session_timeout_ms,
            # events and labels written in transactions count once they are committed
            isolation_level="read_committed",
        )
        finished = asyncio.Event()
        baselines = asyncio.create_task(self._baselines.run(finished), name="truth-baselines")
        try:
            await self._wait_for_baselines(stop, baselines)
            await bounded(self._producer.start(), BROKER_WAIT_S, "starting the alerts producer")
            await bounded(
                self._consumer.start(), BROKER_WAIT_S, "starting the events and labels consumer"
            )
            self._consumer.subscribe([s.topics.events, s.topics.labels], listener=_Rebalance(self))
            # a fetch waits for a rebalance under way, which the group bounds by the poll interval
            fetch_wait_s = s.consumer.max_poll_interval_ms / 1000 + BROKER_WAIT_S
            while not stop.is_set():
                data = await bounded(
                    self._consumer.getmany(
                        timeout_ms=s.consumer.fetch_timeout_ms,
                        max_records=s.consumer.max_batch_records,
                    ),
                    fetch_wait_s,
                    "fetching events and labels (a rebalance that does not end?)",
                )
                if self._rebuild_due is not None:
                    # a new assignment: drop this batch (it is read again from the rebuild's
                    # start), look the start up, seek, read the alerts topic back
                    assigned, self._rebuild_due = self._rebuild_due, None
                    await self._rebuild(assigned)
                    continue
                await self._handle(data)
        finally:
            finished.set()
            await self._consumer.stop()
            await self._producer.stop()
            await asyncio.gather(baselines, return_exceptions=True)

    async def _wait_for_baselines(self, stop: asyncio.Event, follower: asyncio.Task[None]) -> None:
        """Until the baselines topic was read to its end (a reference frozen from the first
        labels would otherwise be judged by), ``stop``, or the wait runs out."""
        waits = [
            asyncio.ensure_future(self._baselines.ready.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        await asyncio.wait(
            [*waits, follower],
            timeout=self._s.truth.baselines_wait_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for w in waits:
            w.cancel()
        if not self._baselines.ready.is_set() and not stop.is_set():
            log.warning("baselines topic not read to its end in time; judging without it")

    def _apply_baselines(self) -> None:
        """Bring the tracker's reference performances up to the baselines held."""
        held: dict[tuple[str, str], str] = {}
        for ref in self._references.all():
            if ref.performance is None:
                continue
            key = (ref.model, ref.model_version)
            held[key] = ref.id
            if self._applied.get(key) == ref.id:
                continue
            try:
                performance = ReferencePerformance.from_bytes(ref.performance)
            except FormatError as exc:
                held.pop(key)
                log.warning(f"baseline {ref.id}: unreadable reference performance, ignored ({exc})")
                continue
            self._tracker.use_baseline(ref.model, ref.model_version, ref.id, performance)
        for key in self._applied.keys() - held.keys():
            self._tracker.remove_baseline(*key)
        self._applied = held
        self._m.baselines_loaded.set(len(held))

    @staticmethod
    def rebuild_span_ms(t: TrackerSettings) -> int:
        """How far back a rebuild reads both topics (and the alerts topic): the horizon, a
        window and the oldest judgement age, so that every window judged from then on has all
        its predictions and the policy has a horizon of windows to come to its state."""
        return t.horizon_ms + t.window_ms + t.judge_ages_ms[-1]

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Start over from :meth:`rebuild_span_ms` ago on every partition now owned.

        Only noted here: the loop rebuilds between two fetches (a seek made here could be
        undone by a batch fetched before it and returned after it), and a listener that
        waits for the broker holds the rebalance and the group's heartbeats up."""
        if assigned:
            self._rebuild_due = list(assigned)

    async def _rebuild(self, assigned: list[TopicPartition]) -> None:
        """A new tracker, the partitions sought to :meth:`rebuild_span_ms` ago, and the alerts
        topic's transitions of that span read back."""
        if self._consumer is None:
            return
        t = self._s.truth
        since = int(time.time() * 1000) - self.rebuild_span_ms(t.tracker_settings())
        found = await bounded(
            self._consumer.offsets_for_times(dict.fromkeys(assigned, since)),
            BROKER_WAIT_S,
            f"looking up the offsets of {len(assigned)} events and labels partitions at the "
            "rebuild's start",
        )
        self._tracker = TruthTracker(t.tracker_settings())
        self._applied = {}
        self._inputs.clear()
        log.info(
            "truth stage owns the events and labels partitions; rebuilding",
            extra={"fields": {"partitions": len(assigned), "since_ms": since}},
        )
        await self._seek({tp: (hit.offset if hit else None) for tp, hit in found.items()})
        self._sent = await read_sent_alerts(self._s, since)

    async def _seek(self, offsets: Mapping[TopicPartition, int | None]) -> None:
        if self._consumer is None:
            return
        owned = self._consumer.assignment()
        for tp, offset in offsets.items():
            if tp not in owned:
                continue  # revoked meanwhile: the next assignment rebuilds again
            if offset is None:  # no record since the rebuild's start
                done = await self._consumer.seek_to_end(tp)
                if not done and tp in self._consumer.assignment():
                    raise TransportError(
                        f"truth stage: seeking {tp.topic}[{tp.partition}] to its end: "
                        "no answer from the broker"
                    )
            else:
                self._consumer.seek(tp, offset)

    async def _handle(self, data: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        if self._consumer is None or self._producer is None:
            return
        labels_topic = self._s.topics.labels
        items: list[tuple[int, str, int, int, Prediction | ConsumerRecord]] = []
        for tp, records in data.items():
            if tp.topic == labels_topic:
                for r in records:
                    items.append((r.timestamp, tp.topic, tp.partition, r.offset, r))
            else:
                items += self._predictions(tp, records)
        alerts: list[Alert] = []
        self._apply_baselines()
        # the fetch moved the positions past this batch already: until its records are in,
        # the partitions it read from hold the clock where they were
        self._tracker.limit_ms = await self._limit(reading=[tp for tp, rs in data.items() if rs])
        for _, topic, partition, _, item in sorted(items, key=lambda i: i[:4]):
            if isinstance(item, Prediction):
                self._note(TopicPartition(topic, partition), item.timestamp_ms)
                alerts += self._tracker.add_prediction(item)
                continue
            label = decode_label(item.value, received_ms=item.timestamp)
            if isinstance(label, Rejection):
                await self._dead_letter(TopicPartition(topic, partition), item, label)
            else:
                self._note(TopicPartition(topic, partition), label.observed_ms)
                alerts += self._tracker.add_label(label)
        self._tracker.limit_ms = await self._limit()
        alerts += self._tracker.tick()
        due = [a for a in alerts if self._sent.admit(a.fingerprint, a.status, a.evaluated_at_ms)]
        self.alerts_withheld += len(alerts) - len(due)
        alerts = due
        for alert in alerts:
            key, value, headers = encode(alert, self._s.alerts.source)
            self._inflight.append(
                await self._producer.send(self._s.topics.alerts, value, key=key, headers=headers)
            )
            self._m.alerts.labels(kind=alert.kind, status=alert.status).inc()
        if self._inflight:
            await bounded(
                asyncio.gather(*self._inflight),
                BROKER_WAIT_S,
                f"the broker acknowledging {len(self._inflight)} alerts and dead letters",
            )
            self._inflight.clear()
        self.alerts_sent += len(alerts)
        if data:
            await self._commit()
        self._publish()

    async def _commit(self) -> None:
        """Commit the positions, for lag monitoring only (a restart rebuilds from the topics,
        not from them): a commit refused in a rebalance or not answered is said, not fatal."""
        if self._consumer is None:
            return
        try:
            await bounded(self._consumer.commit(), BROKER_WAIT_S, "committing offsets")
        except (CommitFailedError, IllegalStateError, KafkaError, TransportError) as exc:
            if not self._commit_failed:
                log.warning(
                    f"truth stage: offsets not committed ({exc}); consumer lag is stale until "
                    "a commit succeeds"
                )
            self._commit_failed = True
        else:
            self._commit_failed = False

    def _note(self, tp: TopicPartition, time_ms: int) -> None:
        self._inputs.note(tp, time_ms)

    async def _limit(self, reading: Iterable[TopicPartition] = ()) -> int | None:
        """The event time every partition with records still to read, or with records in the
        batch being added (``reading``), has reached; None when none lags."""
        if self._consumer is None:
            return None
        behind = []
        for tp in self._consumer.assignment():
            # revoked meanwhile (a rebalance during the awaits): held back until the rebuild
            end = self._consumer.highwater(tp) if tp in self._consumer.assignment() else None
            if end is None:
                behind.append(tp)
                continue
            try:
                position = await bounded(
                    self._consumer.position(tp),
                    BROKER_WAIT_S,
                    f"the position in {tp.topic}[{tp.partition}]",
                )
            except IllegalStateError:
                position = -1
            if position < end:
                behind.append(tp)
        return self._inputs.limit(behind=behind, reading=reading)

    def _predictions(
        self, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> list[tuple[int, str, int, int, Prediction | ConsumerRecord]]:
        batch = decode_batch([r.value for r in records])
        out: list[tuple[int, str, int, int, Prediction | ConsumerRecord]] = []
        for i, event_id in enumerate(batch.event_id):
            if event_id is None:
                continue
            record = records[int(batch.index[i])]
            if int(batch.timestamp_ms[i]) > record.timestamp + self._max_future_ms:
                # stamped too far past its record's time, as the profile stage judges it: it
                # would move the event clock ahead and expire every pending prediction
                self._m.future.inc()
                continue
            score = float(batch.prediction_score[i])
            prediction = Prediction(
                event_id,
                batch.model[i],
                batch.model_version[i],
                segment_key(batch.segment[i]) or UNSEGMENTED,
                int(batch.timestamp_ms[i]),
                score if math.isfinite(score) else None,
                batch.prediction_label[i],
            )
            out.append((record.timestamp, tp.topic, tp.partition, record.offset, prediction))
        return out

    async def _dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord, rejection: Rejection
    ) -> None:
        if self._producer is None:
            return
        headers = dead_letter_headers(
            rejection,
            SourceRecord(tp.topic, tp.partition, record.offset, record.timestamp),
            group=self._s.truth.group_id,
            stage=STAGE,
            now_ms=int(time.time() * 1000),
            original=tuple(record.headers or ()),
        )
        self._inflight.append(
            await self._producer.send(
                f"{self._s.topics.labels}.dlq", record.value, key=record.key, headers=headers
            )
        )
        self._m.labels_invalid.labels(reason=rejection.reason).inc()

    def _publish(self) -> None:
        join = self._tracker.join
        self._m.count(join.counts.as_dict())
        self._m.pending.labels(side="predictions").set(join.pending_predictions)
        self._m.pending.labels(side="labels").set(join.pending_labels)
        for key, ages in self._tracker.judged.items():
            for judged in ages.values():
                self._m.judged(
                    key,
                    judged.completeness,
                    judged.metrics,
                    age=age_label(judged.age_ms),
                    joined=judged.joined,
                    estimate_error=judged.estimate_error,
                    actual_shares=judged.actual_shares if judged.actual_shares else None,
                )
        for key, estimated in self._tracker.estimated.items():
            self._m.estimated_now(key, estimated.metrics)


async def read_sent_alerts(settings: Settings, since_ms: int) -> SentAlerts:
    """The latest transition of each fingerprint of the truth stage's kinds among the alerts
    topic's records from ``since_ms`` on (record time; the rebuild's start), read to the end the
    topic has now, without a consumer group. Older records are not read: a restart costs the
    span of the rebuild, not the topic's whole retention. What that leaves out: an alert that
    has been firing since before ``since_ms`` and that the rebuild fires again is sent again
    (the same fingerprint and status: a re-notification to its receivers)."""
    sent = SentAlerts()
    topic = settings.topics.alerts
    opts = settings.kafka.client_options()
    admin = AIOKafkaAdminClient(**opts)
    await bounded(admin.start(), BROKER_WAIT_S, f"connecting to read {topic} back")
    try:
        known = await bounded(
            BaselinesFollower.partitions(admin, topic),
            BROKER_WAIT_S,
            f"listing the partitions of {topic}",
        )
    finally:
        await admin.close()
    parts = sorted(known, key=lambda tp: tp.partition)
    if not parts:
        return sent
    reader = AIOKafkaConsumer(**opts, enable_auto_commit=False)
    read = 0
    try:
        await bounded(reader.start(), BROKER_WAIT_S, f"connecting to read {topic} back")
        reader.assign(parts)
        ends = await bounded(
            reader.end_offsets(parts), BROKER_WAIT_S, f"the end offsets of {topic}"
        )
        found = await bounded(
            reader.offsets_for_times(dict.fromkeys(parts, since_ms)),
            BROKER_WAIT_S,
            f"the offsets of {topic} at the rebuild's start",
        )
        starts = {tp: ends[tp] if hit is None else hit.offset for tp, hit in found.items()}
        for tp in parts:
            reader.seek(tp, starts[tp])
        positions = dict(starts)
        behind = [tp for tp in parts if ends[tp] > starts[tp]]
        progress_by = time.monotonic() + BROKER_WAIT_S
        while behind:
            batch = await reader.getmany(*behind, timeout_ms=settings.consumer.fetch_timeout_ms)
            for records in batch.values():
                read += len(records)
                for r in records:
                    _note_sent(sent, r)
            moved = {
                tp: await bounded(reader.position(tp), BROKER_WAIT_S, f"the position in {topic}")
                for tp in behind
            }
            if any(moved[tp] > positions[tp] for tp in behind):
                progress_by = time.monotonic() + BROKER_WAIT_S
            elif time.monotonic() > progress_by:
                left = ", ".join(f"[{tp.partition}] at {moved[tp]} of {ends[tp]}" for tp in behind)
                raise TransportError(
                    f"truth stage: reading {topic} back from the rebuild's start: no progress "
                    f"in {BROKER_WAIT_S:g} s ({left})"
                )
            positions.update(moved)
            behind = [tp for tp in behind if moved[tp] < ends[tp]]
    finally:
        await reader.stop()
    log.info(
        "truth stage read the alerts topic back",
        extra={"fields": {"fingerprints": sent.held, "records": read, "since_ms": since_ms}},
    )
    return sent


def _note_sent(sent: SentAlerts, record: ConsumerRecord) -> None:
    try:
        event = orjson.loads(record.value)
        data = event["data"]
        if data["labels"]["kind"] not in ALERT_KINDS:
            return
        at = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        sent.seed(str(data["fingerprint"]), str(data["status"]), round(at.timestamp() * 1000))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return  # not one of ours: another producer's record on the topic
