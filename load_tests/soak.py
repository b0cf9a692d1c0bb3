"""Soak: a steady stream for minutes, a worker SIGKILL and a broker restart in the middle.

One ``driftwire worker`` (both stages, ``processing.guarantee: exactly_once``) reads a
4-partition topic that this script fills at a paced ``--rate`` (default 4,000 events/s: twice
the paced 2,000 events/s of the pipeline benchmark's latency section, under half of what the
benchmark's whole worker reads on this machine), with event time = the pace of production, for
``--seconds``. At ``--kill-at`` of the run the worker is SIGKILLed and started again at once;
at ``--broker-restart-at`` the broker (a local KRaft broker on the same ports and log
directory) is stopped (SIGTERM) and started again. A worker that exits on its own, or whose
``/healthz`` fails for ``--liveness-seconds``, is started again, as a supervisor would (and
counted in the report).

Sampled every second: the worker's consumer lag (``driftwire_consumer_lag``, summed over
partitions) and its RSS. After the stream ends and the worker has settled, checked:

* **counts exact**: the events of the partials committed on the partials topic (read
  ``read_committed``) per (model, bucket) equal the valid events produced; no partial id twice;
  and stage 2's per-bucket traffic (in the model snapshots of its changelog) equals them too;
* **lag bounded and back to zero**: the largest lag, the time after each fault until the lag
  is back under one second of input, and zero at the end;
* **RSS flat**: over the last worker process, after ``--warmup`` seconds, the median RSS of
  its last third within 10% of the median of its first third.

    python load_tests/soak.py [--seconds 600] [--rate 4000] [--json load_tests/results/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from driftwire.decode.decoder import decode_batch
from driftwire.offline.generator import StreamSpec, generate
from driftwire.stages.detect._table import changelog_topic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))

import kafka_broker  # noqa: E402  (tools/, made importable just above)

PARTITIONS = 4
BUCKET_MS = 60_000
TICK_S = 0.1  # the producer's pace: a slice of events every tick


def bounce(broker: kafka_broker.KafkaBroker, down_s: float) -> float:
    """Stop the broker (SIGTERM, a clean shutdown), wait ``down_s``, start it again on the same
    ports and log directory; returns the seconds it was unreachable."""
    started = time.monotonic()
    broker.stop_process()
    time.sleep(down_s)
    broker.restart()
    return time.monotonic() - started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Worker:
    """``driftwire worker`` as a subprocess; restarted when it exits."""

    config: Path
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "driftwire.cli.command",
                    "worker",
                    "--config",
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts.append(time.monotonic())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.exits.append(self.proc.wait())
        self.start()

    unhealthy_since: float | None = None

    def revive(self, liveness_s: float) -> str | None:
        """What a supervisor does: start it again if it exited on its own, or kill and start
        it if ``/healthz`` has failed for ``liveness_s`` (a liveness probe); says which."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            self.start()
            self.unhealthy_since = None
            return f"exited with {self.exits[-1]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10):
                self.unhealthy_since = None
                return None
        except OSError:  # HTTPError (503) included
            now = time.monotonic()
            if self.starts and now - self.starts[-1] < liveness_s:
                return None  # still starting
            if self.unhealthy_since is None:
                self.unhealthy_since = now
            if now - self.unhealthy_since < liveness_s:
                return None
        self.kill()
        self.unhealthy_since = None
        return f"/healthz failing for {liveness_s:g} s: killed and started again"

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def metrics(self) -> dict[str, float]:
        """Every ``driftwire_*`` sample, summed over labels; {} if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
                body = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line.startswith("driftwire_") and " " in line:
                name = line.split("{")[0].split(" ")[0]
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def rss_mib(self) -> float | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


# -- the stream ------------------------------------------------------------------------------


class Feed:
    """Produces the stream at a pace in a thread of its own; counts what the broker acked."""

    def __init__(self, bootstrap: str, topic: str, rate: float, seconds: float) -> None:
        self.bootstrap, self.topic, self.rate, self.seconds = bootstrap, topic, rate, seconds
        self.expected: Counter[tuple[str, int]] = Counter()
        self.produced = 0
        self.failed = 0
        self.error: str | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except Exception as exc:  # reported, and the soak fails
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    async def _produce(self) -> None:
        total = int(self.rate * self.seconds)
        spec = StreamSpec(
            events=total, seed=11, versions=("1.0", "2.0"), events_per_second=self.rate
        )
        events: Iterator[bytes] = generate(spec)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            request_timeout_ms=180_000,  # rides out the broker restart
            max_batch_size=256 * 1024,
        )
        await producer.start()
        try:
            started = time.monotonic()
            sent = 0
            pending: list[tuple[list[bytes], list[asyncio.Future[Any]]]] = []
            while sent < total:
                due = min(total, int((time.monotonic() - started) * self.rate) + 1)
                chunk = list(islice(events, due - sent))
                futures = [
                    await producer.send(self.topic, value=v, partition=(sent + i) % PARTITIONS)
                    for i, v in enumerate(chunk)
                ]
                pending.append((chunk, futures))
                sent += len(chunk)
                while len(pending) > 50 or (pending and all(f.done() for f in pending[0][1])):
                    await self._settle(*pending.pop(0))
                await asyncio.sleep(TICK_S)
            for chunk, futures in pending:
                await self._settle(chunk, futures)
        finally:
            await producer.stop()

    async def _settle(self, chunk: list[bytes], futures: list[asyncio.Future[Any]]) -> None:
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked = [v for v, r in zip(chunk, results, strict=True) if not isinstance(r, BaseException)]
        self.failed += len(chunk) - len(acked)
        self.produced += len(acked)
        batch = decode_batch(acked)
        starts = (batch.timestamp_ms // BUCKET_MS * BUCKET_MS).tolist()
        self.expected.update(zip(batch.model, starts, strict=True))


# -- reading the outcome ---------------------------------------------------------------------


async def _read(bootstrap: str, topic: str, isolation_level: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        if not parts:
            await consumer._client._wait_on_metadata(topic)  # noqa: SLF001
            parts = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
            ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def committed_partials(
    bootstrap: str, topic: str
) -> tuple[Counter[tuple[str, int]], int, dict[int, int]]:
    """Events per (model, bucket) in the committed partials, ids seen twice, and per partition
    one past the last committed record."""
    events: Counter[tuple[str, int]] = Counter()
    ids: Counter[str] = Counter()
    last: dict[int, int] = {}
    for r in asyncio.run(_read(bootstrap, topic, "read_committed")):
        last[r.partition] = max(last.get(r.partition, 0), r.offset + 1)
        doc = orjson.loads(r.value)
        if doc["type"] == "partial":
            ids[doc["id"]] += 1
            events[(doc["model"], int(doc["bucket"]["start_ms"]))] += int(doc["events"])
    return events, sum(1 for n in ids.values() if n > 1), last


def window_counts(bootstrap: str, topic: str) -> Counter[tuple[str, int]]:
    """Stage 2's events per (model, bucket): the largest per-bucket traffic over the model
    snapshots of its changelog (kept uncompacted for this)."""
    out: Counter[tuple[str, int]] = Counter()
    for r in asyncio.run(_read(bootstrap, topic, "read_uncommitted")):
        if r.value is None or b"\x00" in r.key:
            continue  # a deletion, a stored part or an outbox
        doc = orjson.loads(r.value)
        for start, n in doc["state"]["traffic"].items():
            key = (doc["model"], int(start))
            out[key] = max(out[key], int(n))
    return out


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: om.offset for tp, om in found.items() if tp.topic == topic and om.offset >= 0
    }


async def _create_topics(bootstrap: str, specs: list[NewTopic]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(specs)
    finally:
        await admin.close()


def _diff(expected: Counter[tuple[str, int]], got: Counter[tuple[str, int]]) -> list[list[Any]]:
    keys = sorted(set(expected) | set(got))
    return [
        [m, b, expected.get((m, b), 0), got.get((m, b), 0)]
        for m, b in keys
        if expected.get((m, b), 0) != got.get((m, b), 0)
    ]


# -- the run ---------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> dict[str, Any]:
    # the feed's producer rides out the broker restart; its retries are not news
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    workdir = Path(tempfile.mkdtemp(prefix="driftwire-soak-"))
    broker = kafka_broker.KafkaBroker(startup_timeout=180.0)
    broker.start()
    worker: Worker | None = None
    try:
        bootstrap = broker.bootstrap_servers
        topic = "soak.events"
        group = "soak"
        partials = f"{topic}.partials"
        asyncio.run(
            _create_topics(
                bootstrap,
                [
                    NewTopic(topic, PARTITIONS, 1),
                    # every model snapshot stays readable for the count check (no compaction)
                    NewTopic(
                        changelog_topic(f"{group}-detect"),
                        2,
                        1,
                        topic_configs={
                            "cleanup.policy": "delete",
                            "max.message.bytes": str(16 * 2**20),
                        },
                    ),
                ],
            )
        )
        doc = {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {
                "events": topic,
                "partials": partials,
                "alerts": f"{topic}.alerts",
                "baselines": f"{topic}.baselines",
                "partials_partitions": 2,
            },
            "consumer": {"group_id": group},
            "processing": {"guarantee": args.guarantee},
            "profile": {"idle_partition_seconds": 10},
            # stage 2 waits this long for a partition that has not reported: above a failover
            "detect": {"grace_seconds": 90, "data_dir": str(workdir / "faust")},
            "http": {"host": "127.0.0.1", "port": _free_port()},
            "log": {"level": "WARNING"},
        }
        config = workdir / "worker.yaml"
        config.write_text(yaml.safe_dump(doc))
        worker = Worker(config, workdir / "worker.log", int(doc["http"]["port"]))  # type: ignore[index]
        worker.start()
        deadline = time.monotonic() + 180
        while worker.metrics().get("driftwire_assigned_partitions") != PARTITIONS:
            if time.monotonic() > deadline or worker.proc is None or worker.proc.poll() is not None:
                raise RuntimeError(f"worker did not start: {worker.log.read_text()[-3000:]}")
            time.sleep(0.5)

        feed = Feed(bootstrap, topic, args.rate, args.seconds)
        samples: list[dict[str, Any]] = []
        faults: list[dict[str, Any]] = []
        t0 = time.monotonic()
        feed.start()
        killed = restarted = False
        revived: list[dict[str, Any]] = []

        def sample() -> None:
            m = worker.metrics()
            samples.append(
                {
                    "t": round(time.monotonic() - t0, 1),
                    "lag": m.get("driftwire_consumer_lag")
                    if "driftwire_assigned_partitions" in m
                    else None,
                    "rss_mib": None if (r := worker.rss_mib()) is None else round(r, 1),
                    "worker": len(worker.starts),
                    "produced": feed.produced,
                }
            )

        while not feed.done.is_set():
            now = time.monotonic() - t0
            if not killed and now >= args.kill_at * args.seconds:
                killed = True
                worker.kill()
                faults.append({"fault": "worker SIGKILL", "at_s": round(now, 1)})
            if not restarted and now >= args.broker_restart_at * args.seconds:
                restarted = True
                down = bounce(broker, args.broker_down_seconds)
                faults.append(
                    {
                        "fault": "broker restart",
                        "at_s": round(now, 1),
                        "unreachable_s": round(down, 1),
                    }
                )
            if why := worker.revive(args.liveness_seconds):
                revived.append({"at_s": round(now, 1), "why": why})
            sample()
            time.sleep(1.0)
        if feed.error:
            raise RuntimeError(f"the feed failed: {feed.error}")
        produced_s = time.monotonic() - t0

        # settle: stage 1 caught up, stage 2 committed past every committed partials record
        deadline = time.monotonic() + args.settle_seconds
        settled = False
        while time.monotonic() < deadline:
            if why := worker.revive(args.liveness_seconds):
                revived.append({"at_s": round(time.monotonic() - t0, 1), "why": why})
            sample()
            m = worker.metrics()
            if (
                m.get("driftwire_assigned_partitions") == PARTITIONS
                and m.get("driftwire_consumer_lag") == 0
            ):
                got, _, last = committed_partials(bootstrap, partials)
                done = asyncio.run(_committed(bootstrap, f"{group}-detect", partials))
                # every event in a committed partial (the last buckets close by idleness)
                # and stage 2 committed past all of them
                if (
                    sum(got.values()) >= sum(feed.expected.values())
                    and last
                    and all(done.get(p, 0) >= end for p, end in last.items())
                ):
                    time.sleep(5.0)  # the snapshot of the last record is written before that
                    settled = True
                    break
            time.sleep(2.0)
        settled_s = time.monotonic() - t0
        final_metrics = worker.metrics()
        exit_code = worker.stop()

        events, twice, _ = committed_partials(bootstrap, partials)
        windows = window_counts(bootstrap, changelog_topic(f"{group}-detect"))
        report = summarize(args, feed, samples, faults, revived, events, twice, windows)
        report.update(
            settled=settled,
            produce_seconds=round(produced_s, 1),
            settled_at_s=round(settled_s, 1),
            worker_exit_code_at_stop=exit_code,
            worker_exits=worker.exits,
            late_partials=final_metrics.get("driftwire_detect_late_partials_total"),
            events_late=final_metrics.get("driftwire_events_late_total"),
        )
        report["passed"] = bool(
            settled
            and report["counts"]["partials_exact"]
            and report["counts"]["windows_exact"]
            and report["lag"]["back_to_zero"]
            and report["rss"]["flat"]
        )
        return report
    finally:
        if worker is not None and worker.proc is not None and worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
        broker.stop()


def summarize(
    args: argparse.Namespace,
    feed: Feed,
    samples: list[dict[str, Any]],
    faults: list[dict[str, Any]],
    revived: list[dict[str, Any]],
    events: Counter[tuple[str, int]],
    twice: int,
    windows: Counter[tuple[str, int]],
) -> dict[str, Any]:
    lags = [s["lag"] for s in samples if s["lag"] is not None]
    threshold = args.rate  # one second of input
    recoveries = []
    for f in faults:
        after = [s for s in samples if s["t"] > f["at_s"] and s["lag"] is not None]
        back = next((s["t"] for s in after if s["lag"] <= threshold), None)
        recoveries.append(
            {
                **f,
                "lag_back_under_1s_of_input_after_s": None
                if back is None
                else round(back - f["at_s"], 1),
            }
        )
    final_lag = lags[-1] if lags else None
    last_worker = max((s["worker"] for s in samples), default=1)
    mine = [s for s in samples if s["worker"] == last_worker and s["rss_mib"] is not None]
    start_t = mine[0]["t"] if mine else 0.0
    warm = [s["rss_mib"] for s in mine if s["t"] >= start_t + args.warmup]
    third = max(1, len(warm) // 3)
    first, last = (
        (statistics.median(warm[:third]), statistics.median(warm[-third:]))
        if warm
        else (None, None)
    )
    growth = None if not first or last is None else (last - first) / first
    by_minute: dict[int, list[float]] = {}
    for s in samples:
        if s["rss_mib"] is not None:
            by_minute.setdefault(int(s["t"] // 60), []).append(s["rss_mib"])
    partial_diff = _diff(feed.expected, events)
    window_diff = _diff(feed.expected, windows)
    return {
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python load_tests/soak.py " + " ".join(sys.argv[1:]),
        "settings": {
            "seconds": args.seconds,
            "rate_events_per_s": args.rate,
            "partitions": PARTITIONS,
            "guarantee": args.guarantee,
            "kill_at_s": round(args.kill_at * args.seconds, 1),
            "broker_restart_at_s": round(args.broker_restart_at * args.seconds, 1),
        },
        "load": [list(os.getloadavg())],
        "events": {
            "produced": feed.produced,
            "failed_sends": feed.failed,
            "valid": sum(feed.expected.values()),
        },
        "faults": recoveries,
        "worker_restarted_by_supervisor": revived,
        "lag": {
            "max": max(lags) if lags else None,
            "final": final_lag,
            "threshold_back": threshold,
            "back_to_zero": final_lag == 0
            and all(r["lag_back_under_1s_of_input_after_s"] is not None for r in recoveries),
        },
        "rss": {
            "last_worker_warm_samples": len(warm),
            "first_third_median_mib": first,
            "last_third_median_mib": last,
            "growth": None if growth is None else round(growth, 4),
            "flat": growth is not None and abs(growth) <= 0.10,
            "max_mib_by_minute": {m: max(v) for m, v in sorted(by_minute.items())},
        },
        "counts": {
            "buckets": len(feed.expected),
            "partials_exact": not partial_diff and twice == 0,
            "partials_ids_twice": twice,
            "partials_differences": partial_diff[:20],
            "windows_exact": not window_diff,
            "windows_differences": window_diff[:20],
        },
        "lag_samples": [[s["t"], s["lag"]] for s in samples],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="how long events are produced")
    ap.add_argument("--rate", type=float, default=4000.0, help="events/s")
    ap.add_argument("--kill-at", type=float, default=0.4, help="worker SIGKILL, share of the run")
    ap.add_argument("--broker-restart-at", type=float, default=0.6, help="share of the run")
    ap.add_argument("--broker-down-seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS counts")
    ap.add_argument("--settle-seconds", type=float, default=400.0)
    ap.add_argument(
        "--liveness-seconds", type=float, default=60.0, help="/healthz failing this long: restart"
    )
    ap.add_argument(
        "--guarantee", choices=("exactly_once", "at_least_once"), default="exactly_once"
    )
    ap.add_argument("--json", type=Path, help="write the report here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = soak(args)
    shown = {k: v for k, v in report.items() if k != "lag_samples"}
    print(json.dumps(shown, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
