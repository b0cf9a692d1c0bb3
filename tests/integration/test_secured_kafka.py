"""driftwire against a secured broker (SASL_SSL with SCRAM-SHA-512, mTLS, StandardAuthorizer):
the worker runs both stages over each, the producer library signs in over SASL_SSL, no secret
appears in anything they write, and each way of being misconfigured ends start-up with one
line that says which, without retrying what cannot succeed."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from conftest import KEY_PASSWORD, LEAST_PASSWORD, SCRAM_PASSWORD, SecureKafka
from kafkautil import read_all
from test_pipeline_kafka import SEGMENT, START, Worker, input_topic
from tls_certs import CertificateAuthority

from driftwire.errors import TransportError
from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import KafkaSettings
from driftwire.ops.kafka_check import check_kafka
from driftwire.producer import InferenceLogger, KafkaSecurity

pytestmark = [pytest.mark.kafka]

MINUTE = 60_000
SENTINELS = (SCRAM_PASSWORD, KEY_PASSWORD, LEAST_PASSWORD)
PASSWORD_FILES = {"sasl-password", "key-password", "pw", "unused"}  # the tests' own secret files


def _leaks(chunk: bytes | str) -> list[str]:
    text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
    return [s for s in SENTINELS if s in text]


def _events() -> list[bytes]:
    change = Change("income", START + 8 * MINUTE, 3.0, SEGMENT)
    spec = StreamSpec(events=12_000, seed=5, events_per_second=12_000 / 960, changes=(change,))
    bad = [b"{not json", b'{"model": 1}', b"[]"]
    return bad + list(generate(spec))


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


def _run_worker(
    secure: SecureKafka,
    tmp: Path,
    topic: str,
    run: str,
    kafka: dict[str, Any],
    *,
    create_topics: bool = True,
    guarantee: str = "at_least_once",
) -> None:
    """Both stages over ``kafka`` (stage 1 with ``guarantee``); then every output is scanned
    for the sentinels."""
    input_topic(secure.admin, topic, _events())
    worker = Worker(tmp, secure.admin, topic, run)  # secure.admin: the tests' reads and offsets
    worker.doc["kafka"] = kafka
    worker.doc["topics"]["create"] = create_topics  # type: ignore[index]
    worker.doc["log"] = {"level": "DEBUG"}
    worker.doc["processing"] = {"guarantee": guarantee}
    worker.config.write_text(yaml.safe_dump(worker.doc))
    worker.start()
    outputs: list[bytes] = []
    try:
        worker.wait_settled(limit_s=200)
        metrics = worker.metrics()
        assert metrics["driftwire_windows_evaluated_total"] > 0
        for path in ("/metrics", "/healthz", "/readyz"):
            outputs.append(_get(f"http://127.0.0.1:{worker.port}{path}"))
    finally:
        assert worker.stop() == 0, worker.log.read_text()[-5000:]
    topics = worker.doc["topics"]
    alerts = asyncio.run(read_all(secure.admin, topics["alerts"]))
    dead = asyncio.run(read_all(secure.admin, f"{topic}.dlq"))
    partials = asyncio.run(read_all(secure.admin, topics["partials"]))
    assert len(dead) == 3  # the three bad events, dead-lettered over the secured listener
    assert partials, "stage 1 wrote no partials"
    firing = [orjson.loads(r.value) for r in alerts]
    assert any(
        e["data"]["labels"].get("feature") == "income" and e["data"]["status"] == "firing"
        for e in firing
    ), [e["data"]["labels"] for e in firing]
    for record in [*alerts, *dead, *partials]:
        outputs += [record.key or b"", record.value or b""]
        outputs += [k.encode() + b"=" + v for k, v in record.headers]
    outputs.append(worker.log.read_bytes())
    written = [p for p in tmp.rglob("*") if p.is_file() and p.name not in PASSWORD_FILES]
    assert worker.log in written  # and whatever else the worker left in its directories
    outputs += [p.read_bytes() for p in written]
    found = {leak for chunk in outputs for leak in _leaks(chunk)}
    assert not found, f"the worker leaked {found}"


@pytest.mark.timeout(400)
def test_worker_runs_both_stages_over_sasl_ssl_and_leaks_no_secret(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path
) -> None:
    kafka = secure_kafka.sasl_settings(tmp_path / "sasl-password")
    _run_worker(secure_kafka, tmp_path, topic_name, "sasl", kafka)


@pytest.mark.timeout(400)
def test_worker_runs_both_stages_over_mtls_and_leaks_no_secret(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path
) -> None:
    kafka = secure_kafka.mtls_settings(tmp_path / "key-password")
    _run_worker(secure_kafka, tmp_path, topic_name, "mtls", kafka)


@pytest.mark.timeout(120)
def test_producer_signs_in_over_sasl_ssl_from_the_workers_variables(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text(SCRAM_PASSWORD)
    env = {
        "DRIFTWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTWIRE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DRIFTWIRE_KAFKA_SASL_USERNAME": "driftwire",
        "DRIFTWIRE_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "pw"),
        "DRIFTWIRE_KAFKA_SSL_CAFILE": str(secure_kafka.ca),
    }
    security = KafkaSecurity.from_env(env)
    assert SCRAM_PASSWORD not in repr(security)
    logger = InferenceLogger(secure_kafka.sasl_ssl, topic=topic_name, security=security)
    try:
        assert logger._producer_options["enable_idempotence"] is True
        for i in range(500):
            logger.log(
                model="churn", model_version="1", features={"i": i}, prediction=0.5, latency_ms=1
            )
    finally:
        stats = logger.close(timeout=60)
    assert (stats.sent, stats.dropped, stats.failed) == (500, 0, 0), stats
    records = asyncio.run(read_all(secure_kafka.admin, topic_name))
    assert sorted(orjson.loads(r.value)["features"]["i"] for r in records) == list(range(500))


# -- clear failures -------------------------------------------------------------------------


def _start_worker(tmp: Path, kafka: dict[str, Any]) -> tuple[int, str, float]:
    config = tmp / "worker.yaml"
    config.write_text(yaml.safe_dump({"kafka": kafka, "http": {"host": "127.0.0.1", "port": 0}}))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", "worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def _case(secure: SecureKafka, tmp: Path, case: str) -> dict[str, Any]:
    sasl = secure.sasl_settings(tmp / "pw")
    if case == "wrong_password":
        (tmp / "wrong").write_text("SASLsentinel-wrong-password")
        return {**sasl, "sasl_password_file": str(tmp / "wrong")}
    if case == "untrusted":
        return {**sasl, "ssl_cafile": str(secure.other_ca)}
    if case == "hostname":
        return {**sasl, "bootstrap_servers": secure.sasl_ssl.replace("127.0.0.1", "localhost")}
    if case == "no_tls":
        return {**sasl, "bootstrap_servers": secure.admin}
    if case == "no_client_certificate":
        mtls = secure.mtls_settings(tmp / "kpw")
        return {k: v for k, v in mtls.items() if not k.startswith(("ssl_cert", "ssl_key"))}
    raise AssertionError(case)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("wrong_password", "refused the SASL sign-in for user 'driftwire': wrong username or"),
        ("untrusted", "is not trusted"),
        ("hostname", "does not name the host connected to"),
        ("no_tls", "it is not a TLS listener"),
        ("no_client_certificate", "refused our client certificate (mTLS)"),
    ],
)
def test_a_misconfigured_worker_stops_at_once_with_one_line(
    secure_kafka: SecureKafka, tmp_path: Path, case: str, says: str
) -> None:
    code, output, seconds = _start_worker(tmp_path, _case(secure_kafka, tmp_path, case))
    lines = output.strip().splitlines()
    assert code == 1, output
    assert len(lines) == 1, output
    assert lines[0].startswith("driftwire: Kafka: ") and says in lines[0], lines[0]
    assert "Traceback" not in output
    assert seconds < 30, f"took {seconds:.1f} s: retried what cannot succeed"
    assert "SASLsentinel" not in output and not _leaks(output)


def test_an_expired_certificate_is_named(tmp_path: Path) -> None:
    """A real TLS handshake with a server whose certificate expired yesterday."""
    ca = CertificateAuthority.create(tmp_path / "ca")
    expired = ca.issue("old-broker", hosts=("127.0.0.1",), valid_days=-1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(expired.cert, expired.key)

    async def scenario() -> str:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        kafka = KafkaSettings(
            bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SSL", ssl_cafile=str(ca.cert)
        )
        try:
            with pytest.raises(TransportError) as info:
                await check_kafka(kafka)
        finally:
            server.close()
            await server.wait_closed()
        return str(info.value)

    message = asyncio.run(scenario())
    assert "is not valid now" in message and "expired" in message, message


def test_an_unreachable_broker_is_retried_with_backoff_then_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def scenario() -> str:
        with pytest.raises(TransportError) as info:
            await check_kafka(kafka, retry_s=3.0, sleep=sleep)
        return str(info.value)

    message = asyncio.run(scenario())
    # the injected sleep returns at once: the waits double from 0.5 s until the next one
    # would end past the 3 s budget
    assert waits == [0.5, 1.0, 2.0]
    assert "no bootstrap server answered within 3 s" in message
    assert f"cannot reach 127.0.0.1:{port}" in message


# -- a bridge and baseline publishing over SASL_SSL ------------------------------------------


@pytest.mark.timeout(180)
def test_a_bridge_delivers_over_sasl_ssl(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path
) -> None:
    from aiohttp import web

    sys.path.insert(0, str(Path(__file__).parents[1] / "bridges"))  # the bridge tests' helpers
    from test_bridges import make_alert, send_alerts

    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        arrived.set()
        return web.Response(status=200)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        config = tmp_path / "bridge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "kafka": secure_kafka.sasl_settings(tmp_path / "pw"),
                    "topics": {"alerts": topic_name},
                    "http": {"host": "127.0.0.1"},
                    "bridges": {"group_id_prefix": topic_name, "http_port": 0, "webhook_url": url},
                }
            )
        )
        await send_alerts(secure_kafka.admin, topic_name, [make_alert()])
        log = tmp_path / "bridge.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "driftwire.cli.command",
                "bridge",
                "webhook",
                "--config",
                str(config),
                stdout=out,
                stderr=out,
            )
        try:
            waits = {asyncio.create_task(proc.wait()), asyncio.create_task(arrived.wait())}
            await asyncio.wait(waits, timeout=90, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
            await runner.cleanup()
        output = await asyncio.to_thread(log.read_text)
        assert len(received) == 1, output[-3000:]
        assert proc.returncode == 0, output[-3000:]
        assert not _leaks(output)

    asyncio.run(scenario())


@pytest.mark.timeout(180)
def test_baseline_build_publishes_over_sasl_ssl(
    secure_kafka: SecureKafka, topic_name: str, tmp_path: Path
) -> None:
    lines = [orjson.loads(v) for v in generate(StreamSpec(events=3000, seed=4))]
    train = tmp_path / "train.jsonl"
    rows = [{**e["features"], "score": e["prediction"]["score"]} for e in lines]
    train.write_bytes(b"\n".join(orjson.dumps(row) for row in rows))
    config = tmp_path / "c.yaml"
    kafka = secure_kafka.sasl_settings(tmp_path / "pw")
    config.write_text(yaml.safe_dump({"kafka": kafka, "topics": {"baselines": topic_name}}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftwire.cli.command",
            "baseline",
            "build",
            str(train),
            "--model",
            "churn",
            "--model-version",
            "1.4.2",
            "--prediction-column",
            "score",
            "-o",
            str(tmp_path / "b.dwb"),
            "--publish",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = asyncio.run(read_all(secure_kafka.admin, topic_name))
    assert [r.key for r in records] == [b"churn/1.4.2"]
    assert records[0].value == (tmp_path / "b.dwb").read_bytes()
    assert not _leaks(done.stdout + done.stderr)
