"""The producer library: what it sends is what the worker accepts; Kafka trouble never reaches
the caller; the queue stays bounded and drains when the broker is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest
from kafka_broker import KafkaBroker
from kafkautil import create_topics, read_all

from driftwire.decode.decoder import decode_batch
from driftwire.producer import (
    AsyncInferenceLogger,
    InferenceLogger,
    InvalidEventError,
    ModelOptions,
    ProducerStats,
)
from driftwire.producer._quiet import limit_aiokafka_logging
from driftwire.truth.label import GroundTruth, decode_label

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "inference-event.schema.json").read_text("utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
LABEL_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((ROOT / "schemas" / "ground-truth.schema.json").read_text("utf-8"))
)
FEATURES = {"age": 37, "income": 52000.5, "country": "DE", "plan": None, "is_active": True}


def event_kwargs(i: int, **over: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": "churn",
        "model_version": "1.4.2",
        "features": {**FEATURES, "age": 20 + i % 50},
        "prediction": 0.5,
        "latency_ms": 1.5,
        "event_id": str(i),
    }
    kwargs.update(over)
    return kwargs


def queued_values(logger: InferenceLogger) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in logger._core.items]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: Callable[[], bool], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def settled(s: ProducerStats) -> bool:
    return s.queued == 0 and s.logged == s.sent + s.failed + s.dropped


# --- without a broker ------------------------------------------------------------------------


def test_import_does_not_load_the_worker_stack() -> None:
    code = (
        "import sys, driftwire.producer; "
        "heavy = {'numpy', 'datasketches', 'faust', 'river', 'scipy', 'pyarrow', 'pydantic', "
        "'yaml', 'jsonschema', 'prometheus_client'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_events_follow_the_contract_and_pass_the_decoder() -> None:
    logger = InferenceLogger(start=False)
    logger.log(**event_kwargs(0, segment={"region": "eu"}))
    logger.log(**event_kwargs(1, prediction={"score": 0.2, "label": "stay"}, event_id=None))
    logger.log(**event_kwargs(2, prediction="churn", timestamp="2026-11-22T15:04:05.123Z"))
    logger.log(**event_kwargs(3, timestamp=datetime(2026, 11, 22, 15, 4, 5, 123000, tzinfo=UTC)))
    # numpy scalars, a NaN feature (a missing value), a numpy latency
    logger.log(
        **event_kwargs(
            4,
            features={"x": np.float32(1.5), "n": np.int64(3), "gap": math.nan},
            latency_ms=np.float64(2.0),
        )
    )
    events = queued_values(logger)
    assert len(events) == 5
    for event in events:
        VALIDATOR.validate(event)
    assert events[3]["timestamp"] == 1795359845123
    assert events[4]["features"] == {"x": 1.5, "n": 3, "gap": None}
    batch = decode_batch([v for _, v in logger._core.items])
    assert len(batch) == 5 and batch.rejections == []
    assert logger.close().dropped == 5  # never started


def test_log_returns_the_event_id_and_ground_truth_follows_its_schema() -> None:
    logger = InferenceLogger(start=False, validate=True)
    given = logger.log(**event_kwargs(0))
    generated = logger.log(**event_kwargs(1, event_id=None))
    assert given == "0"
    assert generated is not None and len(generated) == 32 and int(generated, 16) >= 0
    assert generated != logger.log(**event_kwargs(2, event_id=None))  # a new one each time
    with logger.timed(model="churn", model_version="1.4.2", features=FEATURES) as call:
        call.prediction = 0.4
    assert call.event_id is not None and len(call.event_id) == 32
    assert logger.log_ground_truth(event_id=generated, model="churn", actual=True) is True
    assert logger.log_ground_truth(
        event_id="0",
        model="churn",
        actual=12.5,
        model_version="1.4.2",
        observed_at=datetime(2026, 11, 23, tzinfo=UTC),
        prediction_timestamp=1795359845123,
    )
    events = queued_values(logger)
    labels = [e for e in events if "actual" in e]
    assert [e["event_id"] for e in events if "features" in e][1] == generated
    assert len(labels) == 2
    topics = [topic for topic, _ in logger._core.items]
    assert topics.count("inference-labels") == 2
    for label in labels:
        LABEL_VALIDATOR.validate(label)
        decoded = decode_label(orjson.dumps(label), received_ms=0)
        assert isinstance(decoded, GroundTruth) and decoded.event_id == label["event_id"]
    assert labels[1]["observed_at"] == 1795392000000
    assert logger.close().dropped == 6


def test_sampled_out_or_invalid_events_have_no_id_and_bad_labels_are_counted() -> None:
    logger = InferenceLogger(start=False, sample_rate=0.0)
    assert logger.log(**event_kwargs(0)) is None
    assert logger.log_ground_truth(event_id="", model="churn", actual=1) is False
    assert logger.log_ground_truth(event_id="e", model="churn", actual=math.nan) is False
    stats = logger.close()
    assert (stats.sampled_out, stats.invalid, stats.logged) == (1, 2, 0)
    strict = InferenceLogger(start=False, validate=True)
    with pytest.raises(InvalidEventError, match="actual"):
        strict.log_ground_truth(event_id="e", model="churn", actual=None)  # type: ignore[arg-type]
    strict.close()


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"model": ""}, "model"),
        ({"model_version": 3}, "model_version"),
        ({"features": [1, 2]}, "features"),
        ({"prediction": None}, "prediction"),
        ({"prediction": math.inf}, "prediction"),
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"latency_ms": "12"}, "latency_ms"),
        ({"timestamp": datetime(2026, 1, 1)}, "timestamp"),  # naive: ambiguous
        ({"features": {"blob": object()}}, "<event>"),
        ({"features": {"text": "x" * 70_000}}, "<event>"),  # over max_event_bytes
    ],
)
def test_bad_events_are_counted_in_production_and_raise_in_development(
    over: dict[str, Any], field: str
) -> None:
    production = InferenceLogger(start=False)
    production.log(**event_kwargs(0, **over))  # never raises
    assert production.stats().invalid == 1 and production.stats().logged == 0
    production.close()

    development = InferenceLogger(start=False, validate=True)
    with pytest.raises(InvalidEventError) as info:
        development.log(**event_kwargs(0, **over))
    assert info.value.field == field
    development.close()


def test_development_mode_checks_the_schema_beyond_the_cheap_checks() -> None:
    nested = event_kwargs(0, features={"address": {"city": "Berlin"}})
    production = InferenceLogger(start=False)
    production.log(**nested)
    assert production.stats().logged == 1  # per-feature rules are the decoder's job
    production.close()

    development = InferenceLogger(start=False, validate=True)
    with pytest.raises(InvalidEventError) as info:
        development.log(**nested)
    assert info.value.field == "features.address"
    development.close()


def test_the_queue_is_bounded_and_drops_the_oldest() -> None:
    logger = InferenceLogger(start=False, max_queue_events=100)
    for i in range(1000):
        logger.log(**event_kwargs(i))
    s = logger.stats()
    assert (s.logged, s.queued, s.dropped) == (1000, 100, 900)
    assert [e["event_id"] for e in queued_values(logger)] == [str(i) for i in range(900, 1000)]
    logger.close()

    by_bytes = InferenceLogger(start=False, max_event_bytes=1024, max_queue_bytes=4096)
    for i in range(100):
        by_bytes.log(**event_kwargs(i))
    assert by_bytes.stats().queued_bytes <= 4096
    assert by_bytes.stats().queued + by_bytes.stats().dropped == 100
    by_bytes.close()


def test_sampling_overall_and_per_model() -> None:
    logger = InferenceLogger(
        start=False,
        sample_rate=0.0,
        models={"churn": ModelOptions(sample_rate=1.0, topic="churn-events")},
    )
    for i in range(50):
        logger.log(**event_kwargs(i))
        logger.log(**event_kwargs(i, model="fraud"))
    s = logger.stats()
    assert (s.logged, s.sampled_out) == (50, 50)
    assert {topic for topic, _ in logger._core.items} == {"churn-events"}
    logger.close()

    half = InferenceLogger(start=False, sample_rate=0.5, max_queue_events=100_000)
    half._core._random = random.Random(7).random  # seeded
    for i in range(4000):
        half.log(**event_kwargs(i))
    assert 1600 < half.stats().logged < 2400  # binomial(4000, 0.5): sd ~32
    half.close()


def test_timed_measures_the_block_and_logs_nothing_when_it_raises() -> None:
    logger = InferenceLogger(start=False)
    with logger.timed(model="churn", model_version="1", features={"age": 37}) as call:
        time.sleep(0.02)
        call.prediction = 0.9
    assert call.latency_ms is not None and call.latency_ms >= 20
    (event,) = queued_values(logger)
    assert event["prediction"] == 0.9 and event["latency_ms"] == call.latency_ms

    with (
        pytest.raises(ZeroDivisionError),
        logger.timed(model="churn", model_version="1", features={}) as failing,
    ):
        failing.prediction = 1 / 0
    assert logger.stats().logged == 1
    logger.close()


def test_instrument_sync_and_async_functions() -> None:
    logger = InferenceLogger(start=False)

    @logger.instrument(
        model="churn",
        model_version="1",
        prediction=lambda out: {"score": out, "label": "churn" if out > 0.5 else "stay"},
        segment=lambda features: {"region": features["region"]},
    )
    def predict(features: dict[str, Any]) -> float:
        return 0.7

    @logger.instrument(model="ranker", model_version="2", features=lambda q, k: {"k": k})
    async def rank(query: str, k: int) -> float:
        await asyncio.sleep(0.01)
        return 1.5

    assert predict({"age": 3, "region": "eu"}) == 0.7
    assert asyncio.run(rank("q", k=5)) == 1.5
    first, second = queued_values(logger)
    assert first["prediction"] == {"score": 0.7, "label": "churn"}
    assert first["segment"] == {"region": "eu"} and first["features"]["age"] == 3
    assert second["features"] == {"k": 5} and second["latency_ms"] >= 10

    @logger.instrument(model="m", model_version="1", features=lambda x: x["missing"])
    def broken_picker(x: dict[str, Any]) -> int:
        return 1

    assert broken_picker({}) == 1  # the picker failed: counted, the prediction unharmed
    assert logger.stats().invalid == 1
    logger.close()


def test_close_is_idempotent_and_log_after_close_is_counted() -> None:
    logger = InferenceLogger(f"127.0.0.1:{free_port()}")
    logger.close(0.5)
    logger.close(0.5)
    logger.log(**event_kwargs(0))
    s = logger.stats()
    assert (s.logged, s.dropped) == (1, 1)


# --- against the real broker -----------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_logged_events_arrive_valid_for_the_schema_and_the_decoder(
    kafka_bootstrap: str, topic_name: str
) -> None:
    labels_topic = f"{topic_name}-labels"
    asyncio.run(create_topics(kafka_bootstrap, [topic_name, labels_topic], partitions=3))
    logger = InferenceLogger(
        kafka_bootstrap, topic=topic_name, labels_topic=labels_topic, validate=True, linger_ms=20
    )
    # three rounds, each sent before the next is logged: three batches at least, whatever the
    # machine's load (a round fits one batch; logged at once, 1,000 events make only two)
    for i in range(1000):
        logger.log(**event_kwargs(i, segment={"region": ("eu", "us")[i % 2]}))
        if i in (333, 666):
            deadline = time.monotonic() + 30
            while logger.stats().sent < i + 1:
                assert time.monotonic() < deadline, logger.stats()
                time.sleep(0.01)
    with logger.timed(model="churn", model_version="1.4.2", features=FEATURES) as call:
        call.prediction = {"score": 0.1, "label": "stay"}
    for i in range(0, 1000, 10):
        assert logger.log_ground_truth(event_id=str(i), model="churn", actual=i % 3 == 0)
    final = logger.close(30)
    assert (final.logged, final.sent, final.dropped, final.failed) == (1101, 1101, 0, 0)
    labels = [
        decode_label(r.value, received_ms=r.timestamp)
        for r in asyncio.run(read_all(kafka_bootstrap, labels_topic))
    ]
    assert sorted(int(g.event_id) for g in labels if isinstance(g, GroundTruth)) == list(
        range(0, 1000, 10)
    )

    records = asyncio.run(read_all(kafka_bootstrap, topic_name))
    assert len(records) == 1001
    assert {r.partition for r in records} == {0, 1, 2}  # batches go round the partitions
    values = [r.value for r in records]
    for value in values:
        VALIDATOR.validate(orjson.loads(value))
    batch = decode_batch(values)
    assert batch.rejections == [] and len(batch) == 1001
    assert sorted(int(i) for i in batch.event_id if i is not None and len(i) < 32) == list(
        range(1000)
    )
    assert call.event_id in batch.event_id  # the timed call's generated id


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_async_logger_on_the_callers_loop(kafka_bootstrap: str, topic_name: str) -> None:
    async def scenario() -> ProducerStats:
        async with AsyncInferenceLogger(kafka_bootstrap, topic=topic_name) as logger:
            for i in range(500):
                logger.log(**event_kwargs(i))
            # a sync endpoint in a thread pool logs from another thread
            await asyncio.to_thread(lambda: [logger.log(**event_kwargs(i)) for i in range(500)])
        return logger.stats()

    final = asyncio.run(scenario())
    assert (final.logged, final.sent, final.dropped) == (1000, 1000, 0)
    values = [r.value for r in asyncio.run(read_all(kafka_bootstrap, topic_name))]
    assert len(values) == 1000 and decode_batch(values).rejections == []


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_atexit_flushes_a_logger_nobody_closed(kafka_bootstrap: str, topic_name: str) -> None:
    script = textwrap.dedent(
        f"""
        from driftwire.producer import InferenceLogger
        logger = InferenceLogger({kafka_bootstrap!r}, topic={topic_name!r}, linger_ms=1000)
        for i in range(200):
            logger.log(model="m", model_version="1", features={{"x": i}}, prediction=1,
                       latency_ms=1)
        """
    )
    subprocess.run([sys.executable, "-W", "error", "-c", script], check=True, timeout=60)
    assert len(asyncio.run(read_all(kafka_bootstrap, topic_name))) == 200


def test_unreachable_broker_never_blocks_the_caller_and_bounds_the_queue() -> None:
    logger = InferenceLogger(f"127.0.0.1:{free_port()}", max_queue_events=500)
    durations = []
    for i in range(5000):
        started = time.perf_counter()
        logger.log(**event_kwargs(i))
        durations.append(time.perf_counter() - started)
    s = logger.stats()
    assert s.queued == 500 and s.dropped == 4500 and s.sent == 0
    # nothing waits on the network: a slow call is a thread switch, never a connect timeout
    assert sum(durations) < 5.0 and max(durations) < 0.5
    started = time.monotonic()
    final = logger.close(timeout=1.0)
    assert time.monotonic() - started < 5.0
    assert final.dropped == 5000 and final.queued == 0


def test_an_unreachable_broker_logs_each_aiokafka_error_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit_aiokafka_logging().reset()  # another test's attempts are not held against this one
    with caplog.at_level(logging.WARNING):
        logger = InferenceLogger(f"127.0.0.1:{free_port()}")
        logger.log(**event_kwargs(0))
        time.sleep(6.0)  # connection attempts at 0, 0.2, 0.6, 1.4, 3.0 s (backoff)
        logger.close(timeout=0.5)
    from_aiokafka = Counter(
        str(r.msg) for r in caplog.records if r.name.split(".")[0] == "aiokafka"
    )
    assert from_aiokafka  # it does say so, once
    assert max(from_aiokafka.values()) == 1, from_aiokafka


# --- a broker that goes away and comes back --------------------------------------------------


class TcpProxy:
    """A TCP forwarder on a fixed port that can be cut (listener and live connections closed)
    and opened again, standing for a broker that goes down and comes back."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.listen_port, reuse_address=True
        )

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in list(self._writers):
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            dst.close()


class _ExternalListenerBroker(KafkaBroker):
    """A broker with a second listener that is advertised at a proxy's port, so that every
    connection a client makes after bootstrapping through the proxy goes through it too."""

    def __init__(self, external_port: int, proxy_port: int) -> None:
        super().__init__()
        self.external_port = external_port
        self.proxy_port = proxy_port

    def _write_config(self, workdir: Path) -> tuple[Path, Path]:
        self.extra_properties = {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:"
                f"{self.controller_port},EXTERNAL://127.0.0.1:{self.external_port}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},EXTERNAL://127.0.0.1:{self.proxy_port}"
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:PLAINTEXT"
            ),
        }
        return super()._write_config(workdir)


@pytest.fixture(scope="module")
def flaky_broker() -> Iterator[tuple[KafkaBroker, int, int]]:
    """(broker, external port, proxy port): clients bootstrap at the proxy port."""
    external, proxy = free_port(), free_port()
    broker = _ExternalListenerBroker(external, proxy)
    try:
        broker.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start the second Kafka broker:\n{exc}", pytrace=False)
    try:
        yield broker, external, proxy
    finally:
        broker.stop()


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_queue_drains_when_the_broker_comes_back(
    flaky_broker: tuple[KafkaBroker, int, int], topic_name: str
) -> None:
    broker, external, proxy_port = flaky_broker
    broker.create_topic(topic_name, partitions=1)
    proxy = TcpProxy(proxy_port, external)
    logger = InferenceLogger(
        f"127.0.0.1:{proxy_port}",
        topic=topic_name,
        max_queue_events=500,
        linger_ms=5,
        kafka_options={"request_timeout_ms": 3000, "retry_backoff_ms": 100},
    )

    def log_burst(start: int, count: int) -> float:
        slowest = 0.0
        for i in range(start, start + count):
            began = time.perf_counter()
            logger.log(**event_kwargs(i))
            slowest = max(slowest, time.perf_counter() - began)
            if i % 100 == 0:
                time.sleep(0.01)  # a server's pace, not a tight loop
        return slowest

    async def scenario() -> None:
        # 1. down from the start: nothing listens on the bootstrap port
        assert log_burst(0, 1500) < 0.5
        s = logger.stats()
        assert s.queued <= 500 and s.dropped >= 1000 and s.sent == 0
        # 2. up: the queue drains
        await proxy.open()
        await wait_for(lambda: settled(logger.stats()), 60, "the queue to drain")
        assert logger.stats().sent == 500
        # 3. down after connecting: live connections cut, nothing listens
        await proxy.cut()
        assert log_burst(10_000, 1500) < 0.5
        await asyncio.sleep(4)  # past request_timeout_ms: in-flight batches expire
        log_burst(20_000, 1500)
        s = logger.stats()
        assert s.queued <= 500 and s.dropped >= 2000
        # 4. up again: drains again
        await proxy.open()
        await wait_for(lambda: settled(logger.stats()), 60, "the queue to drain again")
        final = await asyncio.to_thread(logger.close, 10)
        await proxy.cut()
        assert final.logged == 4500 and final.sent + final.failed + final.dropped == 4500
        assert final.sent >= 1000

    try:
        asyncio.run(scenario())
    finally:
        logger.close(1)
    ids = [
        int(orjson.loads(r.value)["event_id"])
        for r in asyncio.run(read_all(broker.bootstrap_servers, topic_name))
    ]
    assert sorted(ids[:500]) == list(range(1000, 1500))  # the newest 500 of the first outage
    assert 21_499 in ids  # the newest event of the second outage got through
    # a batch cut off in flight may have been written though its acknowledgement was lost
    assert len(set(ids)) >= logger.stats().sent
