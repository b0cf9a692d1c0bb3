"""No bridge leaks a secret: every target runs as ``driftwire bridge`` (the CLI, DEBUG logs) with
sentinel secrets and a failure injected, and everything it wrote is scanned for the sentinels:
stdout, stderr, every file in its working directory, its dead-letter topic (keys, values,
headers), ``/metrics``, ``/healthz`` and ``/readyz``.

The failures: a receiver that answers 4xx and echoes the request's credentials in its body
(PagerDuty's routing key, a webhook's Authorization header), a TLS error (Slack over HTTPS with
a certificate from an untrusted CA), a bad URL (Slack, a scheme aiohttp refuses, the URL
quoted in its exception), an unreachable host (Alertmanager, a URL with a password).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from aiohttp import web
from kafkautil import create_topics, read_all
from spawn import free_port
from test_bridges import make_alert, send_alerts
from tls_certs import CertificateAuthority

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

SENTINELS = {
    "pagerduty": "PDsentinelRoutingKey0123456789ab",  # 32 characters, as PagerDuty's keys
    "webhook": "WHsentinelBearerToken-7f3a9c",
    "slack_tls": "SLsentinelTLSpath-b41e",
    "slack_bad_url": "SLsentinelBadURL-99d0",
    "alertmanager": "AMsentinelUrlPassword-5c2e",
}


def leaks(text: str | bytes) -> list[str]:
    """The sentinels (raw or URL-quoted) found in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [
        name
        for name, value in SENTINELS.items()
        if value in text or quote(value, safe="") in text or value.lower() in text.lower()
    ]


@contextlib.asynccontextmanager
async def echoing_receivers(tls: ssl.SSLContext) -> AsyncIterator[dict[str, str]]:
    """An HTTP server whose /reject answers 400 / 401 with the request echoed (credentials
    included), and an HTTPS server with a certificate no bridge trusts."""

    async def reject(request: web.Request) -> web.Response:
        body = await request.text()
        auth = request.headers.get("Authorization", "")
        status = 401 if auth else 400
        return web.Response(status=status, text=f"refused: {auth} {body}")

    app = web.Application()
    app.router.add_post("/reject", reject)
    app.router.add_post("/services/{rest:.*}", reject)
    runner = web.AppRunner(app)
    await runner.setup()
    plain, secure = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", plain).start()
    await web.TCPSite(runner, "127.0.0.1", secure, ssl_context=tls).start()
    try:
        yield {"http": f"http://127.0.0.1:{plain}", "https": f"https://127.0.0.1:{secure}"}
    finally:
        await runner.cleanup()


@dataclass
class Run:
    name: str
    target: str
    workdir: Path
    dead_letter: str
    port: int
    proc: asyncio.subprocess.Process | None = None


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:  # /readyz may answer 503: its body counts too
        return bytes(exc.read())


def test_no_bridge_leaks_a_secret_through_any_output(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    ca = CertificateAuthority.create(tmp_path / "untrusted-ca")
    server = ca.issue("receiver", hosts=("127.0.0.1", "localhost"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(server.cert, server.key)
    closed_port = free_port()  # nothing listens here

    async def scenario() -> None:
        async with echoing_receivers(tls) as base:
            runs = {
                name: Run(
                    name,
                    name.split("_")[0],
                    tmp_path / name,
                    f"{topic_name}.{name}.dlq",
                    free_port(),
                )
                for name in SENTINELS
            }
            await create_topics(
                kafka_bootstrap, [topic_name, *(r.dead_letter for r in runs.values())]
            )
            secret_dir = tmp_path / "secrets"  # outside every working directory: not scanned
            secret_dir.mkdir()
            for run in runs.values():
                run.workdir.mkdir()
            envs = {
                "pagerduty": {
                    "DRIFTWIRE_BRIDGES_PAGERDUTY_URL": f"{base['http']}/reject",
                    "DRIFTWIRE_BRIDGES_PAGERDUTY_ROUTING_KEY_FILE": _write(
                        secret_dir / "pd", SENTINELS["pagerduty"]
                    ),
                },
                "webhook": {
                    "DRIFTWIRE_BRIDGES_WEBHOOK_URL": f"{base['http']}/reject",
                    "DRIFTWIRE_BRIDGES_WEBHOOK_HEADERS_FILE": _write(
                        secret_dir / "headers",
                        yaml.safe_dump({"Authorization": f"Bearer {SENTINELS['webhook']}"}),
                    ),
                },
                "slack_tls": {
                    "DRIFTWIRE_BRIDGES_SLACK_WEBHOOK_URL": (
                        f"{base['https']}/services/T0/B0/{SENTINELS['slack_tls']}"
                    ),
                },
                "slack_bad_url": {
                    "DRIFTWIRE_BRIDGES_SLACK_WEBHOOK_URL_FILE": _write(
                        secret_dir / "slack",
                        f"hxxps://hooks.example/services/T0/B0/{SENTINELS['slack_bad_url']}",
                    ),
                },
                "alertmanager": {
                    "DRIFTWIRE_BRIDGES_ALERTMANAGER_URL": (
                        f"http://am:{SENTINELS['alertmanager']}@127.0.0.1:{closed_port}"
                    ),
                },
            }
            logs: dict[str, tuple[Path, Path]] = {}
            for name, run in runs.items():
                config = secret_dir / f"{name}.yaml"
                config.write_text(
                    yaml.safe_dump(
                        {
                            "kafka": {"bootstrap_servers": kafka_bootstrap},
                            "topics": {"alerts": topic_name},
                            "log": {"level": "DEBUG"},
                            "http": {"host": "127.0.0.1"},
                            "bridges": {
                                "group_id_prefix": f"{topic_name}-{name}",
                                "http_port": run.port,
                                "dead_letter": run.dead_letter,
                                "max_attempts": 2,
                                "backoff_initial_seconds": 0.05,
                                "backoff_max_seconds": 0.1,
                                "request_timeout_seconds": 2.0,
                            },
                        }
                    )
                )
                out, err = run.workdir / "stdout.txt", run.workdir / "stderr.txt"
                logs[name] = (out, err)
                with out.open("wb") as stdout, err.open("wb") as stderr:
                    run.proc = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "driftwire.cli.command",
                        "bridge",
                        run.target,
                        "--config",
                        str(config),
                        env={**os.environ, "PYTHONUNBUFFERED": "1", **envs[name]},
                        stdout=stdout,
                        stderr=stderr,
                        cwd=run.workdir,
                    )
            await send_alerts(kafka_bootstrap, topic_name, [make_alert()])
            scanned: dict[str, list[bytes]] = {name: [] for name in runs}
            try:
                for name, run in runs.items():
                    records = await _wait_for_dead_letter(kafka_bootstrap, run, logs[name][1])
                    assert len(records) == 1, (name, len(records))
                    record = records[0]
                    headers = dict(record.headers)
                    assert headers["__driftwire.errors.stage"] == f"bridge-{run.target}".encode()
                    scanned[name] += [record.key or b"", record.value or b""]
                    scanned[name] += [k.encode() + b"=" + v for k, v in record.headers]
                    for path in ("/metrics", "/healthz", "/readyz"):
                        url = f"http://127.0.0.1:{run.port}{path}"
                        scanned[name].append(await asyncio.to_thread(_get, url))
                    reasons = {
                        "pagerduty": b"rejected",
                        "webhook": b"rejected",
                        "slack_tls": b"undeliverable",
                        "slack_bad_url": b"undeliverable",
                        "alertmanager": b"undeliverable",
                    }
                    assert headers["__driftwire.errors.reason"] == reasons[name], headers
            finally:
                for run in runs.values():
                    assert run.proc is not None
                    if run.proc.returncode is None:
                        run.proc.send_signal(signal.SIGTERM)
                for run in runs.values():
                    assert run.proc is not None
                    await asyncio.wait_for(run.proc.wait(), 30)
            for name, run in runs.items():
                assert run.proc is not None and run.proc.returncode == 0, (
                    name,
                    logs[name][1].read_text()[-2000:],
                )
                files = [p for p in run.workdir.rglob("*") if p.is_file()]
                assert {p.name for p in files} >= {"stdout.txt", "stderr.txt"}
                for path in files:
                    scanned[name].append(path.read_bytes())
                stderr = logs[name][1].read_text()
                # the failure itself is reported, with its kind, just not the secret
                assert "alert not delivered" in stderr, stderr[-2000:]
                found = {leak for chunk in scanned[name] for leak in leaks(chunk)}
                assert not found, f"{name} leaked {found}"
            tls_log = logs["slack_tls"][1].read_text()
            assert "SSL" in tls_log or "certificate" in tls_log, tls_log[-2000:]

    asyncio.run(scenario())


def _tail(path: Path) -> str:
    return path.read_text()[-2000:]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


async def _wait_for_dead_letter(bootstrap: str, run: Run, stderr: Path) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while True:
        records = await read_all(bootstrap, run.dead_letter)
        if records:
            return list(records)
        if run.proc is not None and run.proc.returncode is not None:
            raise AssertionError(f"{run.name} exited: {_tail(stderr)}")
        if loop.time() > deadline:
            raise AssertionError(f"{run.name}: nothing dead-lettered; {_tail(stderr)}")
        await asyncio.sleep(0.5)


def test_leak_scanner_finds_raw_and_quoted_sentinels() -> None:
    value = SENTINELS["webhook"]
    assert leaks(f"x {value} y") == ["webhook"]
    assert leaks(json.dumps({"u": quote(value, safe="")})) == ["webhook"]
    assert leaks("nothing here") == []
