"""Alert bridges against the real broker, a real Alertmanager and local HTTP receivers that
check payloads against what PagerDuty's and Slack's APIs document."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest
import yaml
from aiohttp import test_utils, web
from aiokafka import AIOKafkaProducer
from kafkautil import committed, create_topics, read_all
from prometheus_client import CollectorRegistry
from spawn import free_port

from driftwire.alerts.alert import Alert, encode
from driftwire.bridges import BridgeShell, build_target
from driftwire.bridges._alert import parse_alert
from driftwire.bridges.alertmanager import alertmanager_alert
from driftwire.bridges.pagerduty import pagerduty_event
from driftwire.bridges.slack import slack_message
from driftwire.ops.config import Settings
from driftwire.ops.metrics import BridgeMetrics

ROOT = Path(__file__).resolve().parents[2]
ALERT_SCHEMA = json.loads((ROOT / "schemas" / "alert.schema.json").read_text("utf-8"))
ROUTING_KEY = "R" * 32
RUNBOOK = "https://runbooks.example/driftwire#data-drift"
DASHBOARD = "http://grafana.example/d/driftwire-model?var-model=churn"

pytestmark = pytest.mark.timeout(120)


# --- alerts ----------------------------------------------------------------------------------


def make_alert(
    status: str = "firing",
    *,
    feature: str = "income",
    severity: str = "critical",
    kind: str = "data_drift",
    evaluated_at_ms: int | None = None,
) -> Alert:
    now = int(time.time() * 1000)
    evaluated = evaluated_at_ms or now
    labels = {
        "alertname": "DriftwireDataDrift",
        "kind": kind,
        "severity": severity,
        "model": "churn",
        "model_version": "1.4.2",
        "segment": "region=eu",
        "feature": feature,
        "statistic": "psi",
    }
    return Alert(
        labels=labels,
        status=status,
        summary=f"{feature} drifted in region=eu (PSI 0.41 ≥ 0.25)",
        description=f"The distribution of {feature} moved away from the baseline.",
        runbook_url=RUNBOOK,
        generator_url=DASHBOARD,
        starts_at_ms=now - 300_000,
        ends_at_ms=evaluated if status == "resolved" else None,
        evaluated_at_ms=evaluated,
        value=0.41 if status == "firing" else 0.08,
        threshold=0.25,
        bound=0.01,
        window={
            "start": "2026-11-22T15:00:00.000Z",
            "end": "2026-11-22T15:05:00.000Z",
            "count": 5120,
        },
        reference={"kind": "baseline", "id": "b-1", "count": 50_000},
        evidence={"top_bins": [{"bin": "50k-60k", "reference": 0.1, "current": 0.3}]},
    )


async def send_alerts(bootstrap: str, topic: str, alerts: list[Alert | bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for alert in alerts:
            if isinstance(alert, bytes):
                await producer.send_and_wait(topic, value=alert, key=b"garbage")
                continue
            key, value, headers = encode(alert, "driftwire-test")
            jsonschema.validate(orjson.loads(value), ALERT_SCHEMA)
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def settings_for(bootstrap: str, topic: str, **bridges: Any) -> Settings:
    return Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {"alerts": topic},
            "bridges": {
                "group_id_prefix": f"{topic}-bridge",
                "max_attempts": 3,
                "backoff_initial_seconds": 0.05,
                "backoff_max_seconds": 0.2,
                "request_timeout_seconds": 1.0,
                "pagerduty_routing_key": ROUTING_KEY,
                **bridges,
            },
        }
    )


@contextlib.asynccontextmanager
async def running(
    settings: Settings, target: str, registry: CollectorRegistry | None = None
) -> AsyncIterator[BridgeShell]:
    metrics = BridgeMetrics(registry or CollectorRegistry(), target)
    shell = BridgeShell(settings, build_target(target, settings), metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(shell.run(stop))
    assigned = asyncio.create_task(shell.assigned.wait())
    await asyncio.wait({task, assigned}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not assigned.done():
        assigned.cancel()
        if task.done():
            task.result()  # raise what stopped it
        raise AssertionError("the bridge got no partitions within 60 s")
    try:
        yield shell
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(check: Callable[[], Any], limit_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + limit_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s}s waiting for {what or check}")
        await asyncio.sleep(0.1)


class Samples:
    """Reads one bridge's metrics from its registry (``target`` filled in)."""

    def __init__(self, registry: CollectorRegistry, target: str) -> None:
        self.registry, self.target = registry, target

    def __call__(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, {"target": self.target, **labels})
        assert value is not None, f"no sample {name} {labels}"
        return value

    def deliveries(self, status: str, result: str) -> float:
        return self("driftwire_bridge_deliveries_total", status=status, result=result)


# --- local receivers -------------------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP endpoint that records requests and answers from a script of responses."""

    check: Callable[[dict[str, Any]], list[str]] | None = None
    script: list[int | str] = field(default_factory=list)  # status codes, or "hang"
    default: int = 202
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        action = self.script.pop(0) if self.script else self.default
        if action == "hang":
            await asyncio.sleep(5)  # beyond the bridge's request timeout
            return web.Response(status=500)
        assert isinstance(action, int)
        if action >= 300:
            return web.json_response({"status": "error"}, status=action)
        problems = self.check(body) if self.check else []
        if problems:
            return web.json_response(
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": problems,
                },
                status=400,
            )
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        return web.json_response({"status": "success", "message": "Event processed"}, status=action)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hook"))
    finally:
        await server.close()


def _iso8601(text: Any) -> bool:
    try:
        datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def pagerduty_problems(body: dict[str, Any]) -> list[str]:
    """The Events API v2 rules (developer.pagerduty.com, "Send an Alert Event")."""
    problems = []
    if not (isinstance(body.get("routing_key"), str) and len(body["routing_key"]) == 32):
        problems.append("routing_key must be a 32-character integration key")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append("event_action must be trigger, acknowledge or resolve")
    dedup = body.get("dedup_key")
    if action != "trigger" and not dedup:
        problems.append("dedup_key is required to acknowledge or resolve")
    if dedup is not None and not (isinstance(dedup, str) and 0 < len(dedup) <= 255):
        problems.append("dedup_key must be a string of at most 255 characters")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*problems, "payload is required to trigger"]
        if not (isinstance(payload.get("summary"), str) and 0 < len(payload["summary"]) <= 1024):
            problems.append("payload.summary must be 1..1024 characters")
        if not payload.get("source"):
            problems.append("payload.source is required")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            problems.append("payload.severity must be critical, error, warning or info")
        if "timestamp" in payload and not _iso8601(payload["timestamp"]):
            problems.append("payload.timestamp must be ISO 8601")
        for key in ("component", "group", "class"):
            if key in payload and not isinstance(payload[key], str):
                problems.append(f"payload.{key} must be a string")
        if not isinstance(payload.get("custom_details", {}), dict):
            problems.append("payload.custom_details must be an object")
        for link in body.get("links", []):
            if not str(link.get("href", "")).startswith(("http://", "https://")):
                problems.append("links[].href must be a URL")
    if len(orjson.dumps(body)) > 512 * 1024:
        problems.append("an event must be at most 512 KB")
    return problems


def slack_problems(body: dict[str, Any]) -> list[str]:
    """Incoming-webhook / Block Kit rules (api.slack.com/reference/block-kit)."""
    problems = []
    if not (isinstance(body.get("text"), str) and body["text"]):
        problems.append("text (the notification fallback) should be set with blocks")
    blocks = body.get("blocks", [])
    if len(blocks) > 50:
        problems.append("at most 50 blocks")
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            text = block.get("text", {})
            if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150:
                problems.append("header text: plain_text, at most 150 characters")
        elif kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                problems.append("a section needs text or fields")
            if text is not None and not 0 < len(text.get("text", "")) <= 3000:
                problems.append("section text: 1..3000 characters")
            if fields is not None and not (
                len(fields) <= 10 and all(0 < len(f.get("text", "")) <= 2000 for f in fields)
            ):
                problems.append("section fields: at most 10, each at most 2000 characters")
        elif kind == "actions":
            for element in block.get("elements", []):
                if element.get("type") != "button" or len(element["text"]["text"]) > 75:
                    problems.append("buttons: plain_text of at most 75 characters")
                if not str(element.get("url", "")).startswith(("http://", "https://")):
                    problems.append("a link button needs a URL")
        elif kind == "context":
            if not 0 < len(block.get("elements", [])) <= 10:
                problems.append("context: 1..10 elements")
        else:
            problems.append(f"unexpected block type {kind!r}")
    return problems


def slack_text(body: dict[str, Any]) -> str:
    """Everything a reader of the message sees, as one string."""
    parts = [body.get("text", "")]
    for block in body["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts.extend(f["text"] for f in block.get("fields", []))
        for element in block.get("elements", []):
            parts.append(element.get("text", "") if element["type"] == "mrkdwn" else "")
            parts.append(element.get("url", ""))
    return "\n".join(parts)


# --- pure rendering --------------------------------------------------------------------------


def test_renderings_follow_the_receivers_contracts() -> None:
    firing = parse_alert(encode(make_alert(), "driftwire-test")[1])
    resolved = parse_alert(encode(make_alert("resolved"), "driftwire-test")[1])
    severities = {"critical": "critical", "warning": "warning"}
    trigger = pagerduty_event(firing, routing_key=ROUTING_KEY, severities=severities)
    assert pagerduty_problems(trigger) == []
    assert trigger["dedup_key"] == firing.fingerprint
    assert trigger["payload"]["custom_details"]["value"] == 0.41
    assert {link["text"] for link in trigger["links"]} == {"Runbook", "Dashboard"}
    resolve = pagerduty_event(resolved, routing_key=ROUTING_KEY, severities=severities)
    assert pagerduty_problems(resolve) == [] and resolve["event_action"] == "resolve"
    warning = parse_alert(encode(make_alert(severity="warning"), "t")[1])
    info = pagerduty_event(warning, routing_key=ROUTING_KEY, severities={})
    assert info["payload"]["severity"] == "info"  # unmapped severities are info

    message = slack_message(firing)
    assert slack_problems(message) == []
    shown = slack_text(message)
    for expected in ("income drifted", "region=eu", "0.41 vs 0.25", RUNBOOK, "FIRING"):
        assert expected in shown
    assert "RESOLVED" in slack_text(slack_message(resolved))

    now = int(time.time() * 1000)
    am = alertmanager_alert(firing, now_ms=now, resend_s=60)
    assert am["labels"] == firing.labels and am["generatorURL"] == DASHBOARD
    assert am["annotations"]["summary"] == firing.summary
    assert am["annotations"]["value"] == "0.41"
    assert _ms(am["endsAt"]) == now + 240_000  # valid for four re-send intervals
    earlier = now - 1000  # the resolve was evaluated after this moment: endsAt is not later
    am_resolved = alertmanager_alert(resolved, now_ms=earlier, resend_s=60)
    assert _ms(am_resolved["startsAt"]) <= _ms(am_resolved["endsAt"]) <= earlier


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


# --- PagerDuty -------------------------------------------------------------------------------


@pytest.mark.kafka
def test_pagerduty_pages_once_per_alert_and_resolves(kafka_bootstrap: str, topic_name: str) -> None:
    receiver = Receiver(check=pagerduty_problems)

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name], partitions=3)
        async with serving(receiver) as url:
            settings = settings_for(
                kafka_bootstrap,
                topic_name,
                pagerduty_url=url,
                routes={"pagerduty": {"severities": ["critical"]}},
            )
            first = make_alert()
            registry = CollectorRegistry()
            sample = Samples(registry, "pagerduty")
            async with running(settings, "pagerduty", registry) as shell:
                await send_alerts(
                    kafka_bootstrap,
                    topic_name,
                    [
                        first,
                        replace(
                            first, evaluated_at_ms=first.evaluated_at_ms + 60_000
                        ),  # re-emitted
                        make_alert("resolved"),
                        make_alert(feature="age", severity="warning"),  # routed to Slack, not here
                    ],
                )
                await eventually(lambda: sum(shell.counts.values()) == 4, what="4 records handled")
                assert shell.counts == {"delivered": 2, "duplicate": 1, "routed_out": 1}
                assert sample.deliveries("firing", "delivered") == 1
                assert sample.deliveries("resolved", "delivered") == 1
                assert sample.deliveries("firing", "undeliverable") == 0
                assert sample("driftwire_bridge_skipped_total", reason="duplicate") == 1
                assert sample("driftwire_bridge_skipped_total", reason="routed_out") == 1
                assert sample("driftwire_bridge_requests_total", code="2xx") == 2
                assert sample("driftwire_bridge_retries_total") == 0
                assert sample("driftwire_bridge_delivery_seconds_count") == 2
                assert 0 < sample("driftwire_bridge_delivery_seconds_sum") < 5
                # evaluated just now (and one 60 s ahead): the age is below a minute
                assert sample("driftwire_bridge_alert_age_seconds_count") == 2
                assert sample("driftwire_bridge_alert_age_seconds_bucket", le="60.0") == 2
                last = sample("driftwire_bridge_last_delivery_timestamp_seconds")
                assert time.time() - 60 < last <= time.time()
                # everything handled: no lag on any partition (once the handled offsets are in)
                await eventually(lambda: shell.sample() == 0, what="no lag")
                assert sample("driftwire_bridge_assigned_partitions") == 3
                assert shell.readiness.ready and not shell.readiness.stuck
            assert [r["event_action"] for r in receiver.requests] == ["trigger", "resolve"]
            assert {r["dedup_key"] for r in receiver.requests} == {first.fingerprint}
            trigger = receiver.requests[0]
            assert trigger["payload"]["severity"] == "critical"
            assert trigger["payload"]["summary"] == first.summary
            assert trigger["payload"]["source"] == "driftwire-test"
            assert trigger["payload"]["custom_details"]["labels"]["feature"] == "income"

            # a restart reads the history as state: a replayed resolve pages nobody
            async with running(settings, "pagerduty") as shell:
                await send_alerts(kafka_bootstrap, topic_name, [make_alert("resolved")])
                await eventually(lambda: shell.counts["duplicate"] == 1, what="the duplicate")
                assert shell.counts["delivered"] == 0
            assert len(receiver.requests) == 2
            records = await read_all(kafka_bootstrap, topic_name)
            ends: dict[int, int] = {}
            for r in records:
                ends[r.partition] = r.offset + 1
            group = f"{topic_name}-bridge-pagerduty"
            assert await committed(kafka_bootstrap, group, topic_name, 3) == ends

    asyncio.run(scenario())


@pytest.mark.kafka
def test_retries_on_5xx_and_timeouts_then_delivers_once(
    kafka_bootstrap: str, topic_name: str
) -> None:
    receiver = Receiver(check=pagerduty_problems, script=[503, "hang", 502])

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name])
        async with serving(receiver) as url:
            settings = settings_for(kafka_bootstrap, topic_name, pagerduty_url=url, max_attempts=4)
            registry = CollectorRegistry()
            async with running(settings, "pagerduty", registry) as shell:
                await send_alerts(kafka_bootstrap, topic_name, [make_alert()])
                await eventually(lambda: shell.counts["delivered"] == 1, what="the delivery")
            assert receiver.attempts == 4 and len(receiver.requests) == 1
            sample = Samples(registry, "pagerduty")
            assert sample.deliveries("firing", "delivered") == 1
            codes = {c: sample("driftwire_bridge_requests_total", code=c) for c in ("2xx", "5xx")}
            assert codes == {"2xx": 1, "5xx": 2}
            assert sample("driftwire_bridge_requests_total", code="error") == 1  # the timeout
            assert sample("driftwire_bridge_retries_total") == 3
            # one delivery, its retries and the 1 s timeout included
            assert sample("driftwire_bridge_delivery_seconds_count") == 1
            assert sample("driftwire_bridge_delivery_seconds_sum") >= 1.0
            assert sample("driftwire_bridge_delivery_seconds_bucket", le="0.5") == 0
            assert await read_all(kafka_bootstrap, f"{topic_name}.dlq") == []
            group = f"{topic_name}-bridge-pagerduty"
            assert await committed(kafka_bootstrap, group, topic_name, 1) == {0: 1}

    asyncio.run(scenario())


def _headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


@pytest.mark.kafka
def test_undeliverable_and_refused_alerts_go_to_the_dead_letter_topic(
    kafka_bootstrap: str, topic_name: str
) -> None:
    # attempts: alert 1 -> 400 (refused: no retry); alert 2 -> 500 x3 (retries exhausted);
    # record 3 is not an alert at all
    receiver = Receiver(check=pagerduty_problems, script=[400, 500, 500, 500])

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name])
        async with serving(receiver) as url:
            settings = settings_for(kafka_bootstrap, topic_name, pagerduty_url=url)
            refused, failing = make_alert(), make_alert(feature="age")
            registry = CollectorRegistry()
            async with running(settings, "pagerduty", registry) as shell:
                await send_alerts(kafka_bootstrap, topic_name, [refused, failing, b"{not json"])
                await eventually(lambda: shell.counts["dead_lettered"] == 3, what="3 dead letters")
            assert receiver.attempts == 4 and receiver.requests == []
            sample = Samples(registry, "pagerduty")
            assert sample.deliveries("firing", "rejected") == 1
            assert sample.deliveries("firing", "undeliverable") == 1
            assert sample.deliveries("firing", "delivered") == 0
            for reason in ("rejected", "undeliverable", "invalid_alert"):
                assert sample("driftwire_bridge_dead_letters_total", reason=reason) == 1
            assert sample("driftwire_bridge_requests_total", code="4xx") == 1
            assert sample("driftwire_bridge_requests_total", code="5xx") == 3
            assert sample("driftwire_bridge_retries_total") == 2
            assert sample("driftwire_bridge_delivery_seconds_count") == 2
            assert sample("driftwire_bridge_alert_age_seconds_count") == 0  # nothing delivered
            no_delivery = registry.get_sample_value(
                "driftwire_bridge_last_delivery_timestamp_seconds", {"target": "pagerduty"}
            )
            assert no_delivery is None  # never a misleading 0
            originals = await read_all(kafka_bootstrap, topic_name)
            dead = await read_all(kafka_bootstrap, f"{topic_name}.dlq")
            assert [(d.key, d.value) for d in dead] == [(o.key, o.value) for o in originals]
            reasons = [_headers(d)["__driftwire.errors.reason"] for d in dead]
            assert reasons == ["rejected", "undeliverable", "invalid_alert"]
            first = _headers(dead[0])
            assert "HTTP 400" in first["__driftwire.errors.exception.message"]
            assert first["__driftwire.errors.stage"] == "bridge-pagerduty"
            assert first["__driftwire.errors.offset"] == "0"
            assert first["ce_id"] == _headers(originals[0])["ce_id"]  # original headers kept
            assert "3 attempts" in _headers(dead[1])["__driftwire.errors.exception.message"]
            assert url not in str([_headers(d) for d in dead])  # never the (secret) URL
            group = f"{topic_name}-bridge-pagerduty"
            assert await committed(kafka_bootstrap, group, topic_name, 1) == {0: 3}

    asyncio.run(scenario())


@pytest.mark.kafka
def test_offsets_are_committed_only_after_delivery(kafka_bootstrap: str, topic_name: str) -> None:
    receiver = Receiver(check=pagerduty_problems)
    group = f"{topic_name}-bridge-pagerduty"

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name])
        async with serving(receiver) as url:
            settings = settings_for(kafka_bootstrap, topic_name, pagerduty_url=url, max_attempts=50)
            registry = CollectorRegistry()
            sample = Samples(registry, "pagerduty")
            async with running(settings, "pagerduty", registry) as shell:
                await send_alerts(kafka_bootstrap, topic_name, [make_alert()])
                await eventually(lambda: shell.counts["delivered"] == 1, what="the first page")
                receiver.default = 503  # PagerDuty is down now
                await send_alerts(kafka_bootstrap, topic_name, [make_alert(feature="age")])
                await eventually(lambda: receiver.attempts >= 4, what="retries")
                assert await committed(kafka_bootstrap, group, topic_name, 1) == {0: 1}
                # the alert being retried is the lag; retrying is progress, not a hang
                await eventually(
                    lambda: (
                        registry.get_sample_value(
                            "driftwire_bridge_consumer_lag",
                            {"target": "pagerduty", "partition": "0"},
                        )
                        == 1
                    ),
                    what="a lag of one record",
                )
                assert not shell.readiness.stuck
                assert sample("driftwire_bridge_requests_total", code="5xx") >= 3
                assert sample.deliveries("firing", "delivered") == 1
            # stopped while retrying: the second alert stays uncommitted
            assert await committed(kafka_bootstrap, group, topic_name, 1) == {0: 1}
            receiver.default = 202
            async with running(settings, "pagerduty") as shell:
                await eventually(lambda: shell.counts["delivered"] == 1, what="the second page")
            assert [
                r["payload"]["custom_details"]["labels"]["feature"] for r in receiver.requests
            ] == [
                "income",
                "age",
            ]
            assert await committed(kafka_bootstrap, group, topic_name, 1) == {0: 2}

    asyncio.run(scenario())


@pytest.mark.kafka
def test_a_new_bridge_delivers_what_fires_now_not_the_history(
    kafka_bootstrap: str, topic_name: str
) -> None:
    receiver = Receiver(check=pagerduty_problems)

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name], partitions=2)
        old, current = make_alert(feature="age"), make_alert(feature="income")
        await send_alerts(
            kafka_bootstrap, topic_name, [old, make_alert("resolved", feature="age"), current]
        )
        async with serving(receiver) as url:
            settings = settings_for(kafka_bootstrap, topic_name, pagerduty_url=url)
            async with running(settings, "pagerduty") as shell:
                await eventually(lambda: shell.counts["delivered"] == 1, what="the firing alert")
                await asyncio.sleep(1)
            assert [(r["event_action"], r["dedup_key"]) for r in receiver.requests] == [
                ("trigger", current.fingerprint)
            ]

    asyncio.run(scenario())


# --- Slack and the generic webhook -----------------------------------------------------------


@pytest.mark.kafka
def test_slack_gets_a_readable_message_for_its_route(kafka_bootstrap: str, topic_name: str) -> None:
    receiver = Receiver(check=slack_problems, default=200)

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name])
        async with serving(receiver) as url:
            settings = settings_for(
                kafka_bootstrap,
                topic_name,
                slack_webhook_url=url,
                routes={"slack": {"severities": ["warning"]}},
            )
            async with running(settings, "slack") as shell:
                await send_alerts(
                    kafka_bootstrap,
                    topic_name,
                    [make_alert(), make_alert(feature="tenure", severity="warning")],
                )
                await eventually(lambda: sum(shell.counts.values()) == 2, what="2 records")
                assert shell.counts == {"routed_out": 1, "delivered": 1}
        (message,) = receiver.requests
        shown = slack_text(message)
        for expected in ("tenure drifted in region=eu", "region=eu", "0.41 vs 0.25", RUNBOOK):
            assert expected in shown, expected
        assert message["text"].startswith(":large_orange_circle: FIRING (warning)")

    asyncio.run(scenario())


@pytest.mark.kafka
def test_webhook_gets_the_cloudevent_as_it_is(kafka_bootstrap: str, topic_name: str) -> None:
    receiver = Receiver(default=204)

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name])
        async with serving(receiver) as url:
            settings = settings_for(
                kafka_bootstrap,
                topic_name,
                webhook_url=url,
                webhook_headers={"Authorization": "Bearer s3cret"},
            )
            async with running(settings, "webhook") as shell:
                await send_alerts(kafka_bootstrap, topic_name, [make_alert()])
                await eventually(lambda: shell.counts["delivered"] == 1, what="the delivery")
        (value,) = [r.value for r in await read_all(kafka_bootstrap, topic_name)]
        assert receiver.requests == [orjson.loads(value)]
        jsonschema.validate(receiver.requests[0], ALERT_SCHEMA)
        headers = receiver.headers[0]
        assert headers["Content-Type"].startswith("application/cloudevents+json")
        assert headers["Authorization"] == "Bearer s3cret"

    asyncio.run(scenario())


@pytest.mark.kafka
def test_cli_runs_a_bridge_until_sigterm(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    receiver = Receiver(default=200)

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name])
        async with serving(receiver) as url:
            config = tmp_path / "bridge.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "kafka": {"bootstrap_servers": kafka_bootstrap},
                        "topics": {"alerts": topic_name},
                        "bridges": {"group_id_prefix": f"{topic_name}-cli"},
                    }
                )
            )
            port = free_port()
            env = {
                **os.environ,
                "DRIFTWIRE_BRIDGES_WEBHOOK_URL": url,
                "DRIFTWIRE_HTTP_HOST": "127.0.0.1",
                "DRIFTWIRE_BRIDGES_HTTP_PORT": str(port),
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "driftwire.cli.command",
                "bridge",
                "webhook",
                "--config",
                str(config),
                env=env,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                await send_alerts(kafka_bootstrap, topic_name, [make_alert()])
                await eventually(lambda: len(receiver.requests) == 1, 60, "the CLI's delivery")
                base = f"http://127.0.0.1:{port}"
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{base}/healthz") as response:
                        assert response.status == 200
                        assert await response.json() == {"status": "ok"}
                    async with session.get(f"{base}/readyz") as response:
                        ready = await response.json()
                        assert response.status == 200, ready
                    assert ready["target"] == "webhook" and ready["ready"] is True
                    assert ready["assigned_partitions"] == 1
                    assert ready["group"] == f"{topic_name}-cli-webhook"

                    async def delivered_metric() -> bool:
                        async with session.get(f"{base}/metrics") as response:
                            assert response.status == 200
                            text = await response.text()
                        line = (
                            "driftwire_bridge_deliveries_total"
                            '{result="delivered",status="firing",target="webhook"} 1.0'
                        )
                        return line in text.splitlines()

                    await eventually(delivered_metric, 10, "the delivery in /metrics")
            finally:
                proc.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, stderr.decode()[-2000:]
            assert b"bridge stopped" in stderr

    asyncio.run(scenario())


# --- Alertmanager (the real one) -------------------------------------------------------------


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real Prometheus Alertmanager on a free port (``make alertmanager``)."""
    binary = (
        os.environ.get("DRIFTWIRE_ALERTMANAGER")
        or shutil.which("prometheus-alertmanager")
        or shutil.which("alertmanager")
    )
    if not binary:
        pytest.fail(
            "Alertmanager is not installed: run 'make alertmanager' (Debian package "
            "prometheus-alertmanager) or set DRIFTWIRE_ALERTMANAGER to its binary",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("alertmanager")
    config = workdir / "alertmanager.yml"
    config.write_text(
        'route:\n  receiver: "null"\n  group_wait: 1s\nreceivers:\n  - name: "null"\n'
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "alertmanager.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Alertmanager exited:\n{log_path.read_text()[-3000:]}", pytrace=False)
            with contextlib.suppress(OSError):
                import urllib.request

                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Alertmanager not ready:\n{log_path.read_text()[-3000:]}", pytrace=False
                )
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def active_alerts(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v2/alerts") as response:
        response.raise_for_status()
        alerts: list[dict[str, Any]] = await response.json()
        return alerts


def _topic_alerts(alerts: list[dict[str, Any]], feature: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("feature") == feature]


@pytest.mark.kafka
def test_alertmanager_shows_firing_alerts_and_clears_resolved_ones(
    kafka_bootstrap: str, topic_name: str, alertmanager: str
) -> None:
    income, age = f"income-{topic_name[-8:]}", f"age-{topic_name[-8:]}"  # unique per test

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name], partitions=3)
        settings = settings_for(kafka_bootstrap, topic_name, alertmanager_url=alertmanager)
        async with running(settings, "alertmanager") as shell:
            a, b = make_alert(feature=income), make_alert(feature=age, severity="warning")
            await send_alerts(kafka_bootstrap, topic_name, [a, b])

            async def both_firing() -> bool:
                shown = await active_alerts(alertmanager)
                return len(_topic_alerts(shown, income)) == 1 == len(_topic_alerts(shown, age))

            await eventually(both_firing, what="both alerts in Alertmanager")
            (shown,) = _topic_alerts(await active_alerts(alertmanager), income)
            assert shown["labels"] == a.labels
            assert shown["annotations"]["summary"] == a.summary
            assert shown["annotations"]["runbook_url"] == RUNBOOK
            assert shown["generatorURL"] == DASHBOARD
            assert shown["status"]["state"] == "active"
            starts = datetime.fromisoformat(shown["startsAt"].replace("Z", "+00:00"))
            assert abs(starts.timestamp() * 1000 - a.starts_at_ms) < 1

            await send_alerts(kafka_bootstrap, topic_name, [make_alert("resolved", feature=income)])

            async def income_cleared() -> bool:
                shown = await active_alerts(alertmanager)
                return not _topic_alerts(shown, income) and len(_topic_alerts(shown, age)) == 1

            await eventually(income_cleared, what="the resolved alert to clear")
            assert shell.counts["delivered"] == 3

    asyncio.run(scenario())


@pytest.mark.kafka
def test_alertmanager_firing_alerts_are_resent_and_survive_a_restart(
    kafka_bootstrap: str, topic_name: str, alertmanager: str
) -> None:
    feature = f"resend-{topic_name[-8:]}"

    async def firing() -> bool:
        return bool(_topic_alerts(await active_alerts(alertmanager), feature))

    async def scenario() -> None:
        await create_topics(kafka_bootstrap, [topic_name])
        # valid for 4 x 1 s after each send: only re-sends keep it active
        settings = settings_for(
            kafka_bootstrap,
            topic_name,
            alertmanager_url=alertmanager,
            alertmanager_resend_seconds=1,
        )
        async with running(settings, "alertmanager") as shell:
            await send_alerts(kafka_bootstrap, topic_name, [make_alert(feature=feature)])
            await eventually(firing, what="the alert in Alertmanager")
            await asyncio.sleep(6)
            assert await firing() and shell.counts["resent"] >= 3
        # the bridge is gone: Alertmanager lets the alert expire (endsAt passes)
        await eventually(lambda: _not(firing()), 15, "the alert to expire")
        # a restarted bridge rebuilds its firing alerts from the topic and re-sends them
        async with running(settings, "alertmanager") as shell:
            await eventually(firing, 15, "the re-sent alert")
            assert shell.counts["delivered"] == 0 and shell.counts["resent"] >= 1

    asyncio.run(scenario())


async def _not(check: Any) -> bool:
    return not await check
