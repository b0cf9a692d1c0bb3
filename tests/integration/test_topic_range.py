"""A time range of the events topic, read once on the real broker: a baseline from last week's
traffic (``baseline build --topic``), a backfill over the days after it (``replay --topic``) and
the HTML report of a range (``report --topic``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafkautil import create_topics

from driftwire.alerts.alert import iso
from driftwire.detect.reference import Reference
from driftwire.offline.generator import Change, StreamSpec, generate

pytestmark = pytest.mark.kafka

MINUTE = 60_000
PARTITIONS = 3
FEATURES = {
    "age",
    "income",
    "tenure_days",
    "sessions_7d",
    "basket_value",
    "discount",
    "support_calls",
    "pages_per_visit",
    "country",
    "plan",
    "device",
    "newsletter",
}


def run_cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS": bootstrap},
    )


async def _produce_with_event_time(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Each record stamped with its event's time, keyed by segment as a model server would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = []
        for value in values:
            event = orjson.loads(value)
            key = orjson.dumps(event["segment"], option=orjson.OPT_SORT_KEYS)
            futures.append(
                await producer.send(topic, value=value, key=key, timestamp_ms=event["timestamp"])
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_baseline_backfill_and_report_from_a_topic_range(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path
) -> None:
    hour = 3_600_000
    start = (int(time.time() * 1000) // hour - 3) * hour  # recent: within the retention
    spec = StreamSpec(
        events=36_000,
        seed=21,
        start_ms=start,
        events_per_second=36_000 / 3600,  # one hour of traffic
        changes=(Change("age", start + 40 * MINUTE, 3.0),),
    )
    values = list(generate(spec))
    times = [orjson.loads(v)["timestamp"] for v in values]
    asyncio.run(create_topics(kafka_bootstrap, [topic_name], PARTITIONS))
    asyncio.run(_produce_with_event_time(kafka_bootstrap, topic_name, values))

    # a baseline of the first 20 minutes: exactly the events in the range, by their features
    since, until = iso(start), iso(start + 20 * MINUTE)
    assert since is not None and until is not None
    out = run_cli(
        kafka_bootstrap, "baseline", "build", "--topic", topic_name, "--since", since,
        "--until", until, "-o", str(tmp_path / "b.dwb"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    in_range = sum(1 for t in times if start <= t < start + 20 * MINUTE)
    reference = Reference.from_bytes((tmp_path / "b.dwb").read_bytes())
    assert reference.count == in_range == 12_000
    assert set(reference.profiles["all"].features) == FEATURES
    assert len(reference.profiles) == 9  # 8 segments and all
    assert f"of churn 1.4.2: {in_range} events, 12 features" in out.stderr

    # a backfill of the 40 minutes after it: the age drift from minute 40, no other input
    alerts_file = tmp_path / "alerts.jsonl"
    after = iso(start + 20 * MINUTE)
    assert after is not None
    out = run_cli(
        kafka_bootstrap, "replay", "--topic", topic_name, "--since", after,
        "--baseline", str(tmp_path / "b.dwb"), "-o", str(alerts_file),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    backfilled = sum(1 for t in times if t >= start + 20 * MINUTE)
    assert f"{backfilled} events profiled, 0 rejected" in out.stderr
    alerts = [orjson.loads(line) for line in alerts_file.read_bytes().splitlines()]
    firing = [a["data"] for a in alerts if a["data"]["status"] == "firing"]
    drifted = {d["labels"].get("feature") for d in firing if d["labels"]["kind"] == "data_drift"}
    assert "age" in drifted
    first = min(d["startsAt"] for d in firing if d["labels"].get("feature") == "age")
    assert first >= str(iso(start + 40 * MINUTE))
    assert {a["data"]["reference"]["kind"] for a in alerts} == {"baseline"}
    # the same alerts as a replay of the same events from a file (one partition, one clock)
    events_file = tmp_path / "after.jsonl"
    events_file.write_bytes(
        b"\n".join(v for v, t in zip(values, times, strict=True) if t >= start + 20 * MINUTE)
    )
    out = run_cli(
        kafka_bootstrap, "replay", str(events_file), "--baseline", str(tmp_path / "b.dwb"),
        "-o", str(tmp_path / "file.jsonl"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    from_file = [orjson.loads(line) for line in (tmp_path / "file.jsonl").read_bytes().splitlines()]

    def key(alert: dict[str, Any]) -> tuple[str, str, str]:
        data = alert["data"]
        return data["fingerprint"], data["status"], data["window"]["end"]

    assert sorted(map(key, alerts)) == sorted(map(key, from_file))

    # a mistyped topic is named, and not created by asking for it
    for _ in range(2):
        out = run_cli(kafka_bootstrap, "replay", "--topic", topic_name + "-typo")
        assert out.returncode == 1
        assert out.stderr.splitlines() == [
            f"driftwire: no topic '{topic_name}-typo' at {kafka_bootstrap}: check the name "
            "(--topic)"
        ]

    # the report of the same range: the last window, the age drift firing in it
    out = run_cli(
        kafka_bootstrap, "report", "--topic", topic_name, "--since", after,
        "--baseline", str(tmp_path / "b.dwb"), "-o", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "126 tests" in out.stderr
    page = (tmp_path / "r.html").read_text()
    assert 'data-input="age"' in page and "firing" in page
