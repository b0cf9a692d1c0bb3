"""A real worker over the real broker: its status API and ``driftwire status`` agree with the
alerts topic; SIGHUP reloads its config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from browserutil import browse
from jsonschema import Draft202012Validator, FormatChecker
from kafkautil import committed, create_topics, last_record_ends, produce, read_all
from spawn import free_port

from driftwire.offline.generator import Change, StreamSpec, generate

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "status.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
MINUTE = 60_000
START = StreamSpec(events=1).start_ms
SEGMENT = "region=eu,tier=gold"
PARTITIONS = 2


class Worker:
    """``driftwire worker`` as a subprocess with its own config, HTTP port and log."""

    def __init__(self, tmp: Path, bootstrap: str, topic: str) -> None:
        self.port = free_port()
        self.bootstrap = bootstrap
        self.doc: dict[str, Any] = {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {
                "events": topic,
                "partials": f"{topic}.partials",
                "alerts": f"{topic}.alerts",
                "baselines": f"{topic}.baselines",
                "partials_partitions": 2,
            },
            "consumer": {"group_id": topic, "fetch_timeout_ms": 200, "session_timeout_ms": 6000},
            "profile": {"idle_partition_seconds": 1},
            "detect": {
                "window_buckets": 5,
                "min_count": 200,
                "min_reference_count": 300,
                "grace_seconds": 2,
                "data_dir": str(tmp / "faust"),
            },
            "http": {"host": "127.0.0.1", "port": self.port},
        }
        self.config = tmp / "driftwire.yaml"
        self.write(self.doc)
        self.log = tmp / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, doc: dict[str, Any]) -> None:
        self.config.write_text(yaml.safe_dump(doc))

    def start(self, *options: str) -> None:
        command = ["worker", "-c", str(self.config), *options]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftwire.cli.command", *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def answer(self, path: str) -> Any:
        """``get``, or None while the worker answers 503 (its detect stage is starting)."""
        try:
            return self.get(path)
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            return None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def metrics(self) -> dict[str, float]:
        """Every sample, by name with its labels as Prometheus prints them."""
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line.startswith("driftwire_"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def evaluated(self) -> float:
        m = self.metrics()
        return sum(v for k, v in m.items() if k.startswith("driftwire_windows_evaluated_total"))

    def tail(self) -> str:
        return self.log.read_text()[-5000:]

    def wait(self, what: str, check: Any, limit_s: float = 150) -> Any:
        assert self.proc is not None
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.tail()
            found = check()
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"{what} did not happen in {limit_s:.0f}s\n{self.tail()}")

    def settled(self) -> bool:
        """Both stages read their input to its end and evaluations stopped changing."""
        before = self.metrics()
        evaluated = sum(
            v for k, v in before.items() if k.startswith("driftwire_windows_evaluated_total")
        )
        lags = [v for k, v in before.items() if k.startswith("driftwire_consumer_lag{")]
        if evaluated == 0 or len(lags) != PARTITIONS or any(lags):
            return False
        time.sleep(4)
        if self.evaluated() != evaluated:
            return False
        topics, group = self.doc["topics"], self.doc["consumer"]["group_id"]
        return asyncio.run(caught_up(self.bootstrap, topics["partials"], f"{group}-detect"))


async def caught_up(bootstrap: str, topic: str, group: str) -> bool:
    """``group`` has committed past every record of ``topic`` (stage 1 writes it in
    transactions: a reader never commits past the last marker)."""
    ends = await last_record_ends(bootstrap, topic)
    done = await committed(bootstrap, group, topic, len(ends))
    return bool(ends) and all(done.get(p, -1) >= end for p, end in ends.items())


@pytest.fixture
def worker(kafka_bootstrap: str, topic_name: str, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(tmp_path, kafka_bootstrap, topic_name)
    try:
        yield w
    finally:
        if w.proc is not None:
            w.stop()


def still_firing(bootstrap: str, topic: str) -> set[str]:
    """Fingerprints whose last event on the alerts topic is a firing one."""
    out: set[str] = set()
    for record in asyncio.run(read_all(bootstrap, topic)):
        data = orjson.loads(record.value)["data"]
        if data["status"] == "firing":
            out.add(data["fingerprint"])
        else:
            out.discard(data["fingerprint"])
    return out


@pytest.mark.timeout(600)
def test_status_and_alerts_agree_with_the_alerts_topic(worker: Worker) -> None:
    # income shifts by 1.5 sd in one segment from minute 30 of a 60-minute stream, to its end
    change = Change("income", START + 30 * MINUTE, 1.5, SEGMENT)
    spec = StreamSpec(events=40_000, seed=11, events_per_second=40_000 / 3600, changes=(change,))
    events = worker.doc["topics"]["events"]
    asyncio.run(create_topics(worker.bootstrap, [events], PARTITIONS))
    asyncio.run(produce(worker.bootstrap, events, list(generate(spec)), partitions=PARTITIONS))
    worker.start()
    worker.wait("the worker settling", worker.settled, limit_s=240)

    topic = still_firing(worker.bootstrap, worker.doc["topics"]["alerts"])
    assert topic, "the injected drift fires"
    status = worker.get("/api/v1/status")
    VALIDATOR.validate(status)
    firing = [c for c in status["conditions"] if c["state"] == "firing"]
    assert {c["fingerprint"] for c in firing} == topic
    assert status["counts"]["firing"] == len(topic)
    assert {(c["feature"], c["segment"]) for c in firing} <= {
        ("income", SEGMENT),
        ("income", "all"),
    }
    assert ("income", SEGMENT) in {(c["feature"], c["segment"]) for c in firing}
    (model,) = status["models"]
    assert [v["version"] for v in model["versions"]] == ["1.4.2"]
    (version,) = model["versions"]
    assert SEGMENT in version["segments"]
    assert version["reference"]["count"] >= 300 and version["window"]["count"] >= 200
    assert status["worker"]["stage"] == "all" and status["worker"]["partitions"] == [0, 1]

    alerts = worker.get("/api/v1/alerts")
    assert {a["fingerprint"] for a in alerts} == topic
    assert all(a["status"]["state"] == "active" and a["endsAt"] is None for a in alerts)

    only = worker.get("/api/v1/status?state=firing&limit=1")
    assert len(only["conditions"]) == 1 and (only["next_cursor"] is None) == (len(topic) == 1)

    table = subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", "status", "--url", worker.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    print(table)  # the README shows this output
    lines = table.splitlines()
    assert max(map(len, lines)) <= 80
    assert len([line for line in lines if line.startswith("FIRING")]) == len(topic)
    assert f"{len(topic)} firing" in lines[1]
    assert worker.stop() == 0


def reload_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "config reload" in line]


@pytest.mark.timeout(300)
def test_sighup_reloads_live_settings_and_keeps_the_old_config_on_a_bad_file(
    worker: Worker,
) -> None:
    events = worker.doc["topics"]["events"]
    asyncio.run(create_topics(worker.bootstrap, [events], PARTITIONS))
    worker.start("--reload-poll-seconds", "0")  # SIGHUP alone: no race with the file check

    def info() -> str | None:
        found = [k for k in worker.metrics() if k.startswith("driftwire_config_info{")]
        return found[0].split('hash="', 1)[1].split('"', 1)[0] if found else None

    first = worker.wait("the HTTP server", info)
    assert (
        worker.wait("the detect stage", lambda: worker.answer("/api/v1/status"))["worker"][
            "config_hash"
        ]
        == first
    )

    doc = json.loads(json.dumps(worker.doc))
    doc["detect"]["thresholds"] = {"psi": [0.2, 0.4]}
    doc["alerts"] = {"silences": [{"matchers": ['model="churn"'], "comment": "maintenance"}]}
    doc["topics"]["alerts"] = "elsewhere"  # cannot change live
    worker.write(doc)
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGHUP)
    lines = worker.wait("the reload line", lambda: reload_lines(worker.log))
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    message = record["message"]
    assert message.startswith(
        "config reloaded (SIGHUP): applied: alerts.silences 0 silences -> 1 silence; "
        "detect.thresholds.psi (unset) -> [0.2,0.4] | needs a restart (the running value is "
        'kept): topics.alerts "test_sighup'
    )  # the old topic name is long: shortened to 60 characters
    assert message.endswith('-> "elsewhere"')
    second = worker.wait("the new hash", lambda: (h := info()) != first and h)
    assert record["hash"] == second and record["previous_hash"] == first
    m = worker.metrics()
    assert m['driftwire_config_reloads_total{result="restart_needed"}'] == 0
    assert m['driftwire_config_reloads_total{result="applied"}'] == 1
    assert worker.get("/api/v1/status")["worker"]["config_hash"] == second

    doc["detect"]["thresholds"] = {"psi": "high"}  # not a [warning, critical] pair
    worker.write(doc)
    worker.proc.send_signal(signal.SIGHUP)
    lines = worker.wait("the rejection", lambda: reload_lines(worker.log)[1:])
    record = json.loads(lines[0])
    assert record["message"].startswith("config reload (SIGHUP) rejected, the running config ")
    assert "detect.thresholds" in record["message"]
    assert info() == second
    assert worker.metrics()['driftwire_config_reloads_total{result="rejected"}'] == 1
    assert worker.stop() == 0
    assert len(reload_lines(worker.log)) == 2


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(600)
def test_an_alerts_link_opens_the_workers_report_and_a_misspelt_baseline_is_named(
    worker: Worker, tmp_path: Path
) -> None:
    worker.doc["alerts"] = {"generator_url_base": worker.url}
    worker.write(worker.doc)
    logged = list(generate(StreamSpec(events=20_000, seed=3)))
    (tmp_path / "logged.jsonl").write_bytes(b"\n".join(logged) + b"\n")
    typo = [v.replace(b'"churn"', b'"chrun"') for v in logged]
    (tmp_path / "typo.jsonl").write_bytes(b"\n".join(typo) + b"\n")
    config = str(worker.config)
    for name in ("logged", "typo"):  # the right baseline, and one under a misspelt name
        out = _cli("baseline", "build", str(tmp_path / f"{name}.jsonl"), "--publish", "-c",
                   config, "-o", str(tmp_path / f"{name}.dwb"))  # fmt: skip
        assert out.returncode == 0, out.stderr
    change = Change("income", START + 30 * MINUTE, 1.5, SEGMENT)
    spec = StreamSpec(events=40_000, seed=11, events_per_second=40_000 / 3600, changes=(change,))
    events = worker.doc["topics"]["events"]
    asyncio.run(create_topics(worker.bootstrap, [events], PARTITIONS))
    asyncio.run(produce(worker.bootstrap, events, list(generate(spec)), partitions=PARTITIONS))
    worker.start()
    worker.wait("the worker settling", worker.settled, limit_s=240)

    records = asyncio.run(read_all(worker.bootstrap, worker.doc["topics"]["alerts"]))
    firing = [orjson.loads(r.value)["data"] for r in records]
    firing = [d for d in firing if d["status"] == "firing"]
    assert firing
    for data in firing:  # every alert links to the worker's report of its window
        assert data["generatorURL"].startswith(
            f"{worker.url}/report?model=churn&version=1.4.2&window_end="
        )
    live = worker.get("/api/v1/alerts")  # firing now: their links name the current window
    assert live
    seen = browse(live[0]["generatorURL"])
    assert seen["status"] == 200 and seen["errors"] == []
    assert "the worker's live state" in seen["text"] and "has passed" not in seen["text"]
    assert len(seen["boxes"]) == 126  # 14 inputs x (8 segments + all)

    out = _cli("report", "--url", worker.url, "--model", "churn", "-o", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith(f"report of churn from {worker.url}: ")
    page = (tmp_path / "r.html").read_text()
    assert "<svg class" in page and "baseline" in page

    assert worker.metrics()["driftwire_baselines_unmatched"] == 1
    log = [json.loads(line) for line in worker.log.read_text().splitlines() if "chrun" in line]
    (unmatched,) = [r for r in log if r["message"].startswith("baseline chrun 1.4.2")]
    assert unmatched["level"] == "warning"
    assert "matches no model" in unmatched["message"]
    assert "Is chrun a typo of churn?" in unmatched["message"]
    assert worker.stop() == 0
