"""A real Prometheus scrapes a real worker whose HTTP endpoints want TLS and a basic-auth user.

The worker (``driftwire worker`` against the test broker) gets ``http.web_config_file``: its
certificate from a throwaway CA (tools/tls_certs.py), client certificates of that CA verified
when given, and one bcrypt user. Prometheus (Debian's ``prometheus``) runs five jobs on it:
the right credentials over HTTPS, the same with a client certificate, a wrong password, plain
HTTP, and a client certificate of another CA. Exactly the first two are up. A bridge
(``driftwire bridge webhook``) with the same file is scraped by a sixth job, and is up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from kafkautil import create_topics
from spawn import free_port, spawn_driftwire, spawn_prometheus
from tls_certs import CertificateAuthority

PASSWORD = "scrape-pass-31"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run `make ops-deps`", pytrace=False)
    return found


def _targets(prometheus: str) -> dict[str, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{prometheus}/api/v1/targets", timeout=5) as response:
            doc = json.loads(response.read())
    except OSError:
        return {}
    return {t["labels"]["job"]: t for t in doc["data"]["activeTargets"]}


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
        return result


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_prometheus_scrapes_the_worker_over_tls_with_basic_auth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prometheus_bin = _tool("prometheus")
    ca = CertificateAuthority.create(tmp_path / "pki", "web-ca")
    server = ca.issue("worker", hosts=("localhost", "127.0.0.1"))
    scraper = ca.issue("prometheus", client=True)
    stranger = CertificateAuthority.create(tmp_path / "other", "other-ca").issue(
        "stranger", client=True
    )
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(server.cert),
                    "key_file": str(server.key),
                    "client_ca_file": str(ca.cert),
                    "client_auth_type": "VerifyClientCertIfGiven",
                },
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    topic = f"webcfg-{os.getpid()}-{int(time.time())}"
    # the alerts topic too: the bridge may start before the worker has made it
    asyncio.run(create_topics(kafka_bootstrap, [topic, f"{topic}.alerts"], 1))
    worker_port, prom_port, bridge_port = free_port(), free_port(), free_port()
    (tmp_path / "worker.yaml").write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": kafka_bootstrap},
                "topics": {
                    "events": topic,
                    "partials": f"{topic}.partials",
                    "alerts": f"{topic}.alerts",
                    "baselines": f"{topic}.baselines",
                },
                "consumer": {"group_id": f"{topic}-group"},
                "detect": {"data_dir": str(tmp_path / "faust")},
                "http": {"host": "127.0.0.1", "port": worker_port, "web_config_file": str(web)},
            }
        )
    )
    (tmp_path / "bridge.yaml").write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": kafka_bootstrap},
                "topics": {"alerts": f"{topic}.alerts"},
                "http": {"host": "127.0.0.1", "web_config_file": str(web)},
                "bridges": {
                    "group_id_prefix": f"{topic}-bridge",
                    "http_port": bridge_port,
                    "webhook_url": "http://127.0.0.1:9/hook",  # no alert is sent here
                },
            }
        )
    )
    (tmp_path / "password").write_text(PASSWORD)
    (tmp_path / "wrong").write_text(PASSWORD + "x")
    target = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    secured = {
        "scheme": "https",
        "tls_config": {"ca_file": str(ca.cert)},
        "basic_auth": {"username": "prometheus", "password_file": str(tmp_path / "password")},
        "static_configs": target,
    }
    mtls = {"cert_file": str(scraper.cert), "key_file": str(scraper.key)}
    foreign = {"cert_file": str(stranger.cert), "key_file": str(stranger.key)}
    jobs = {
        "secured": secured,
        "secured-mtls": {**secured, "tls_config": {"ca_file": str(ca.cert), **mtls}},
        "wrong-password": {
            **secured,
            "basic_auth": {"username": "prometheus", "password_file": str(tmp_path / "wrong")},
        },
        "plain-http": {**secured, "scheme": "http"},
        "foreign-cert": {**secured, "tls_config": {"ca_file": str(ca.cert), **foreign}},
        "bridge-secured": {
            **secured,
            "static_configs": [{"targets": [f"127.0.0.1:{bridge_port}"]}],
        },
    }
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [{"job_name": n, **job} for n, job in jobs.items()],
            }
        )
    )
    prometheus = f"http://127.0.0.1:{prom_port}"
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "bridge", "prometheus")}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            spawn_driftwire(
                ["worker", "--config", str(tmp_path / "worker.yaml")], logs["worker"], tmp_path
            )
        )
        procs.append(
            spawn_driftwire(
                ["bridge", "webhook", "--config", str(tmp_path / "bridge.yaml")],
                logs["bridge"],
                tmp_path,
            )
        )
        procs.append(spawn_prometheus(prometheus_bin, tmp_path, prom_port, logs["prometheus"]))

        def tail() -> str:
            return "\n".join(f"--- {n}\n{p.read_text()[-3000:]}" for n, p in logs.items())

        deadline = time.monotonic() + 90
        found: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for proc in procs:
                assert proc.poll() is None, f"{proc.args!r} exited early\n{tail()}"
            found = _targets(prometheus)
            if (
                len(found) == len(jobs)
                and all(t["health"] != "unknown" for t in found.values())
                and found["secured"]["health"] == found["secured-mtls"]["health"] == "up"
                # a scrape from before the worker listened says only "connection refused"
                and not any("connection refused" in t["lastError"] for t in found.values())
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"targets never settled: {found}\n{tail()}")
        health = {job: t["health"] for job, t in found.items()}
        assert health == {
            "secured": "up",
            "secured-mtls": "up",
            "wrong-password": "down",
            "plain-http": "down",
            "foreign-cert": "down",
            "bridge-secured": "up",
        }, f"{found}\n{tail()}"
        assert "401 Unauthorized" in found["wrong-password"]["lastError"], found
        assert found["secured"]["scrapeUrl"].startswith("https://")
        # the samples are in Prometheus: the worker's own metrics, and up == 1 for both jobs
        time.sleep(2)
        up = {r["metric"]["job"]: r["value"][1] for r in _query(prometheus, "up")}
        assert up == {
            "secured": "1",
            "secured-mtls": "1",
            "wrong-password": "0",
            "plain-http": "0",
            "foreign-cert": "0",
            "bridge-secured": "1",
        }
        scraped = _query(prometheus, "driftwire_build_info")
        assert {r["metric"]["job"] for r in scraped} == {
            "secured",
            "secured-mtls",
            "bridge-secured",
        }, scraped
        bridge = _query(prometheus, "driftwire_bridge_assigned_partitions")
        assert {r["metric"]["job"] for r in bridge} == {"bridge-secured"}, bridge
        assert PASSWORD not in logs["worker"].read_text() + logs["bridge"].read_text()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
