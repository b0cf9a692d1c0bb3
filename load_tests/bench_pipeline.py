"""The whole pipeline against a real broker: throughput, alert latency, memory, scale.

In one run, on the same events in the same broker (a local one started with
``tools/kafka_broker.py`` and the full JIT, or the one named by ``KAFKA_BOOTSTRAP_SERVERS``):

* **ceiling**: a plain aiokafka consumer reading the events topic with ``getmany``
  (``max_records`` as driftwire's ``consumer.max_batch_records``) and only ``orjson.loads`` on
  each value, events/s;
* **profile stage**: :class:`~driftwire.stages.profile.ProfileStage` in this process on the same
  topic with a fresh consumer group, events/s and its ratio to the ceiling (in wall time and
  in CPU time; the second is what a dedicated core would give); ``profile_stage_eos`` runs it
  once more right after with ``processing.guarantee: exactly_once`` (Kafka transactions) and
  reports its ratio to the at-least-once run;
* **worker**: ``driftwire worker`` (both stages, a subprocess) on the same topic, events/s and
  CPU seconds per million events (from ``/proc/<pid>/stat``) while it reads the input, and
  end to end: until stage 2 has read every record of the partials topic and its last
  evaluation or alert is out (stage 2 may finish well after stage 1 has read the input);
* **scale-out**: one, then two ``driftwire worker --stage profile`` processes (plus one
  ``--stage detect``) on the same 4-partition topic: the profile stage's events/s, and the
  alert (fingerprint, status) sets compared with the single worker's, and stage 2's CPU per
  evaluated window (the ``--stage detect`` process's CPU from start-up done to settled, over
  the comparisons it counted in ``driftwire_windows_evaluated_total``, times the comparisons of
  one window: reading and merging partials, every comparison, alerts, the changelog);
* **memory**: the worker's RSS sampled during its run (or during a separate, longer run with
  ``--memory-events``), start/max/end after a warm-up share of the input;
* **latency**: events produced at a paced rate with event time = wall time, 10-second buckets,
  no lateness, several injected changes (a shift in one feature of one segment for two
  buckets); for every alert, the time from the production of the event that closed its window
  to the alert's arrival on the alerts topic, p50 and p99, split into stage 1 (to the last
  watermark record that completes the window), stage 2 (to the alert's production) and delivery;
* **scale**: for 1/100/1,000 segments x 12/100/500 features (``--grid``), the profile stage's
  events/s and its state: the bytes of the partials it produces per bucket. Events per cell
  shrink with features and segments so that every cell takes seconds, not minutes.

Every section records the load average before and after it: on a shared machine the figures
move with it. ``--quick`` is a smoke run (a few thousand events, one-second buckets, the worker
runs side by side): its figures mean nothing, its shape is the real one. ``--only`` runs some
sections, ``--hot-path`` adds a cProfile pass over the profile stage, ``--py-spy DIR`` samples
every separate detect process with py-spy (folded stacks in DIR, the largest shares in the JSON).

The results are printed as a table and written as JSON (``--json``) to compare runs. Targets
are reported, not asserted: profile stage >= 0.5 of the ceiling, latency p99 <= one bucket + 2 s,
RSS within 10% after warm-up.

    python load_tests/bench_pipeline.py [--quick] [--events N] [--json PATH] [--hot-path]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import traceback
import urllib.request
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from prometheus_client import CollectorRegistry

from driftwire.cli.worker import tune_gc
from driftwire.offline.generator import Change, StreamSpec, generate, numeric_names
from driftwire.ops.config import ConsumerSettings, Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.profiling.partitions import Emission, ProfileCore
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core
from driftwire.stages.topics import ensure_topics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))

import kafka_broker  # noqa: E402  (tools/, made importable just above)
import loadgen  # noqa: E402

MAX_RECORDS = ConsumerSettings().max_batch_records  # what driftwire's getmany asks for
FETCH_BYTES = 4 * 1024 * 1024  # the profile stage's max_partition_fetch_bytes
PARTITIONS = 4
DEFAULT_MESSAGE_LIMIT = 1024 * 1024  # aiokafka's max_request_size, the broker's message.max.bytes
TARGET_RATIO = 0.5
TARGET_RSS_GROWTH = 0.10
DRIFT_SEGMENT = "region=eu,tier=gold"
MIB = 1024 * 1024

#: the broker's JVM for benchmarks: the test defaults without ``-XX:TieredStopAtLevel=1`` (C1
#: only), which starts faster but runs the broker markedly slower under load
FAIR_JVM_OPTIONS = tuple(
    o for o in kafka_broker.DEFAULT_JVM_OPTIONS if not o.startswith("-XX:TieredStopAtLevel")
)


# -- measuring -------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ranked = sorted(values)
    rank = max(1, -(-len(ranked) * q // 100))
    return ranked[min(len(ranked), int(rank)) - 1]


def per_million(cpu_s: float | None, events: int) -> float | None:
    return None if cpu_s is None or events <= 0 else round(cpu_s / events * 1e6, 2)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    calibration = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        commit = out.stdout.strip() or None
    return {
        "commit": commit,
        "cores": os.cpu_count(),
        "cpu_model": model,
        "load_start": loadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "calibration_sum_range_1000_us": round(calibration, 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Kafka helpers ---------------------------------------------------------------------------


async def create_topic(
    bootstrap: str, name: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return len(names)
    finally:
        await admin.close()


async def topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        if not parts:
            await consumer._client._wait_on_metadata(topic)
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        return sum(ends[tp] - starts[tp] for tp in parts)
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, limit_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` up to its current end, without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        known = consumer.partitions_for_topic(topic)
        if not known:
            await consumer._client._wait_on_metadata(topic)
            known = consumer.partitions_for_topic(topic)
        parts = [TopicPartition(topic, p) for p in sorted(known or [])]
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[Any] = []
        deadline = time.monotonic() + limit_s
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {limit_s} s")
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


def transitions(records: list[Any]) -> set[tuple[str, str]]:
    """The (fingerprint, status) pairs of the alerts in ``records``."""
    out = set()
    for r in records:
        data = orjson.loads(r.value)["data"]
        out.add((data["fingerprint"], data["status"]))
    return out


def settings_doc(
    bootstrap: str,
    events: str,
    run: str,
    *,
    profile: dict[str, Any] | None = None,
    detect: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    guarantee: str = "at_least_once",
) -> dict[str, Any]:
    """Settings of one run: its own consumer group and output topics, all named after it.

    Stage 1 runs ``at_least_once`` unless told otherwise, as in the published results (the
    ``profile_stage_eos`` run is the exactly-once one): the settling checks compare records
    read with the partials topic's offsets, which transaction markers would inflate."""
    base = f"{events}.{run}"
    detect_doc: dict[str, Any] = dict(detect or {})
    if data_dir is not None:
        detect_doc["data_dir"] = str(data_dir / run)
    return {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {
            "events": events,
            "dead_letter": f"{base}.dlq",
            "partials": f"{base}.partials",
            "alerts": f"{base}.alerts",
            "baselines": f"{base}.baselines",
        },
        "consumer": {"group_id": base},
        "profile": {"idle_partition_seconds": 2, **(profile or {})},
        "detect": detect_doc,
        "http": {"host": "127.0.0.1", "port": 0},
        "log": {"level": "WARNING"},
        "processing": {"guarantee": guarantee},
    }


# -- ceiling ---------------------------------------------------------------------------------


async def run_ceiling(bootstrap: str, topic: str, total: int, limit_s: float) -> dict[str, Any]:
    """A plain consumer that only decodes: the most any consumer of this topic can do here."""
    load = loadavg()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}.ceiling",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    loads = orjson.loads
    await consumer.start()
    try:
        n = 0
        t0 = cpu0 = 0.0
        deadline = time.monotonic() + limit_s
        while n < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"ceiling consumer read {n} of {total} events")
            data = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
            if not data:
                continue
            if not t0:  # the clock starts with the first batch in hand
                t0, cpu0 = time.perf_counter(), self_cpu_s()
            for records in data.values():
                for record in records:
                    loads(record.value)
                n += len(records)
        seconds = time.perf_counter() - t0
        cpu = self_cpu_s() - cpu0
    finally:
        await consumer.stop()
    counted = n
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(counted / seconds) if seconds > 0 else None,
        "cpu_s_per_million_events": per_million(cpu, counted),
        "max_records": MAX_RECORDS,
        "load": [load, loadavg()],
    }


# -- the profile stage in this process -------------------------------------------------------


@dataclass
class Tally:
    """What a :class:`TallyCore` emitted."""

    partials: int = 0
    partial_bytes: int = 0
    max_partial_bytes: int = 0
    watermarks: int = 0


class TallyCore(ProfileCore):
    """A :class:`ProfileCore` that counts the bytes of the partials it hands to the stage."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tally = Tally()

    def _count(self, emission: Emission) -> Emission:
        for out in emission.records:
            if out.broadcast:
                self.tally.watermarks += 1
            else:
                self.tally.partials += 1
                self.tally.partial_bytes += len(out.value)
                self.tally.max_partial_bytes = max(self.tally.max_partial_bytes, len(out.value))
        return emission

    def due(self, now_ms: int | None) -> Emission:
        return self._count(super().due(now_ms))

    def flush(self, partition: int) -> Emission:
        return self._count(super().flush(partition))


class TimedStage(ProfileStage):
    """A :class:`ProfileStage` that notes the time and CPU when its first batch is in hand and
    when each batch with records is done: the stage is timed as the ceiling is, from its first
    batch to the end of its last (a watcher polling a counter missed part of the first batch,
    and with it the CPU of whatever the first batch does once, and its share scattered)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records = 0
        self.first: tuple[float, float] | None = None  # (perf_counter, CPU s)
        self.last: tuple[float, float] | None = None

    async def _handle(self, data: Any) -> None:
        if data and self.first is None:
            self.first = (time.perf_counter(), self_cpu_s())
        await super()._handle(data)
        if data:
            self.records += sum(map(len, data.values()))
            self.last = (time.perf_counter(), self_cpu_s())


async def run_profile_stage(
    settings: Settings,
    total: int,
    limit_s: float,
    *,
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """ProfileStage in this process until it has handled ``total`` events; then stop it."""
    load = loadavg()
    await ensure_topics(settings)
    core = profile_core(settings, kind=TallyCore)
    assert isinstance(core, TallyCore)
    stage = TimedStage(settings, core, Metrics(CollectorRegistry()), Readiness())
    stop = asyncio.Event()
    if profiler is not None:
        profiler.enable()
    task = asyncio.create_task(stage.run(stop))
    try:
        deadline = time.monotonic() + limit_s
        while stage.records < total:
            if task.done():
                task.result()
                raise RuntimeError("profile stage stopped before consuming everything")
            if time.monotonic() > deadline:
                raise TimeoutError(f"profile stage consumed {stage.records} of {total} events")
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=120)
        finally:
            if profiler is not None:
                profiler.disable()
    assert stage.first is not None and stage.last is not None
    seconds = stage.last[0] - stage.first[0]
    cpu = stage.last[1] - stage.first[1]
    return {
        "events": total,
        "seconds": round(seconds, 3),
        "events_per_s": round(total / seconds) if seconds > 0 else None,
        "cpu_s_per_million_events": per_million(cpu, total),
        "partials": core.tally.partials,
        "partial_bytes": core.tally.partial_bytes,
        "max_partial_bytes": core.tally.max_partial_bytes,
        "load": [load, loadavg()],
    }


# -- worker processes ------------------------------------------------------------------------


@dataclass
class Scrape:
    values: dict[str, float] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)


class WorkerProcess:
    """``driftwire worker`` as a subprocess with its own config, metrics port and log."""

    def __init__(self, workdir: Path, name: str, doc: dict[str, Any], stage: str = "all") -> None:
        self.name = name
        self.stage = stage
        self.port = free_port()
        self.doc = json.loads(json.dumps(doc))
        self.doc["http"] = {"host": "127.0.0.1", "port": self.port}
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(yaml.safe_dump(self.doc))
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "driftwire.cli.command", "worker", "--stage", self.stage]
        # the config file alone decides: no DRIFTWIRE_<SECTION>_<KEY> overrides from here
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWIRE_")}
        env.update(PYTHONUNBUFFERED="1")
        if "DRIFTWIRE_CACHE_DIR" in os.environ:
            env["DRIFTWIRE_CACHE_DIR"] = os.environ["DRIFTWIRE_CACHE_DIR"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"worker {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def scrape(self) -> Scrape:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                body = r.read().decode()
        except OSError:
            return Scrape()
        out = Scrape()
        for line in body.splitlines():
            if not line.startswith("driftwire_") or " " not in line:
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            value = float(line.rsplit(" ", 1)[1])
            out.values[name] = out.values.get(name, 0.0) + value
            if name == "driftwire_consumer_lag":
                out.lags.append(value)
        return out

    def stop(self, timeout: float = 90.0, *, signalled: bool = False) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        if not signalled:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            return None


@dataclass
class Sample:
    t: float  # unix time
    consumed: float
    cpu_s: float | None
    rss: list[int | None]


@dataclass
class Watch:
    """Samples of one or more profile-stage processes consuming a topic to its end."""

    samples: list[Sample]
    total: int
    end_t: float
    per_process: list[dict[str, Any]]
    settle_rss: list[int] = field(default_factory=list)  # first process, after the input

    def throughput(self) -> tuple[float | None, float | None, int]:
        """events/s and CPU seconds from the first sample with progress to the end."""
        first = next((s for s in self.samples if s.consumed > 0), None)
        if first is None:
            return None, None, 0
        last = self.samples[-1]
        seconds = self.end_t - first.t
        counted = int(self.total - first.consumed)
        cpu = None
        if first.cpu_s is not None and last.cpu_s is not None:
            cpu = last.cpu_s - first.cpu_s
        return (counted / seconds if seconds > 0 and counted > 0 else None), cpu, counted


async def watch_consumption(
    procs: Sequence[WorkerProcess],
    total: int,
    limit_s: float,
    *,
    interval_s: float = 0.25,
    others: Sequence[WorkerProcess] = (),
) -> Watch:
    """Sample ``procs`` (profile stages) until the group has read every partition to its end."""
    samples: list[Sample] = []
    deadline = time.monotonic() + limit_s
    progress: list[float] = [0.0] * len(procs)
    consumed_by: list[float] = [0.0] * len(procs)
    while True:
        for p in (*procs, *others):
            p.check()
        now = time.time()
        scrapes = [await asyncio.to_thread(p.scrape) for p in procs]
        consumed = sum(s.values.get("driftwire_events_consumed_total", 0.0) for s in scrapes)
        for i, s in enumerate(scrapes):
            if "driftwire_events_consumed_total" in s.values:
                consumed_by[i] = s.values["driftwire_events_consumed_total"]
                progress[i] = s.values.get("driftwire_last_progress_timestamp_seconds", 0.0)
        samples.append(Sample(now, consumed, _cpu_of(procs), [proc_rss(p.pid) for p in procs]))
        lags = [v for s in scrapes for v in s.lags]
        if consumed >= total and len(lags) >= PARTITIONS and not any(lags):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers consumed {consumed:.0f} of {total} events in {limit_s} s")
        await asyncio.sleep(interval_s)
    end_t = max(progress) if max(progress) > 0 else samples[-1].t
    per_process = [
        {"name": p.name, "events_consumed": int(consumed_by[i])} for i, p in enumerate(procs)
    ]
    return Watch(samples, total, end_t, per_process)


async def wait_settled(
    procs: Sequence[WorkerProcess],
    quiet_s: float,
    limit_s: float,
    *,
    partials: tuple[str, str] | None = None,
    rss: list[tuple[float, int]] | None = None,
) -> dict[str, float]:
    """Until stage 2 has read all of ``partials`` (bootstrap, topic) and nothing changed for
    ``quiet_s``: partials, records read by stage 2, evaluations, alerts.

    ``rss`` collects (time, RSS) of the first process meanwhile. The result has, besides the
    totals, ``last_change_t`` (wall time of the last change: stage 2's real end) and
    ``last_change_cpu_s`` (the processes' CPU seconds then).
    """
    keys = (
        "driftwire_partials_produced_total",
        "driftwire_detect_records_total",
        "driftwire_windows_evaluated_total",
        "driftwire_alerts_produced_total",
    )
    deadline = time.monotonic() + limit_s
    last: tuple[float, ...] | None = None
    since = time.monotonic()
    totals: dict[str, float] = {}
    written = 0.0
    next_size = 0.0
    changed_t, changed_cpu = time.time(), _cpu_of(procs)
    while time.monotonic() < deadline:
        for p in procs:
            p.check()
        if rss is not None and (value := proc_rss(procs[0].pid)) is not None:
            rss.append((time.time(), value))
        scrapes = [await asyncio.to_thread(p.scrape) for p in procs]
        totals = {k: sum(s.values.get(k, 0.0) for s in scrapes) for k in keys}
        if partials is not None and time.monotonic() >= next_size:
            written = float(await topic_size(*partials))
            next_size = time.monotonic() + 1.0
        now = tuple(totals.values())
        if now != last:
            last, since = now, time.monotonic()
            changed_t, changed_cpu = time.time(), _cpu_of(procs)
        elif (
            time.monotonic() - since >= quiet_s
            and totals["driftwire_detect_records_total"] >= written
        ):
            break
        await asyncio.sleep(0.25)
    else:
        totals["timed_out"] = 1.0
    totals["partials_topic_records"] = written
    totals["last_change_t"] = changed_t
    if changed_cpu is not None:
        totals["last_change_cpu_s"] = changed_cpu
    return totals


def _cpu_of(procs: Sequence[WorkerProcess]) -> float | None:
    """CPU seconds of all ``procs`` together, if every one can be read."""
    cpus = [proc_cpu_s(p.pid) for p in procs]
    return None if any(c is None for c in cpus) else sum(c for c in cpus if c is not None)


def stop_all(procs: Sequence[WorkerProcess]) -> None:
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    for p in procs:
        code = p.stop(signalled=True)
        if code not in (0, None):
            print(f"warning: {p.name} exited with {code}\n{p.log_tail(1500)}", file=sys.stderr)


def memory_figures(watch: Watch, warmup: float) -> dict[str, Any]:
    """RSS of the (single) watched process after the first ``warmup`` of the events."""
    rss = [(s.consumed, s.rss[0]) for s in watch.samples if s.rss and s.rss[0] is not None]
    # after the warm-up share of the input, and on while stage 2 catches up
    after = [r for c, r in rss if c >= warmup * watch.total and r is not None]
    after += watch.settle_rss
    if not after:
        return {"samples": len(rss), "rss_start_mib": None}
    start, top, end = after[0], max(after), after[-1]
    growth = top / start - 1
    by_tenth = []  # RSS when each tenth of the input had been read, then when stage 2 was done
    for tenth in range(1, 11):
        reached = [r for c, r in rss if c >= tenth / 10 * watch.total and r is not None]
        by_tenth.append(round(reached[0] / MIB, 1) if reached else None)
    if watch.settle_rss:
        by_tenth.append(round(watch.settle_rss[-1] / MIB, 1))
    return {
        "samples": len(rss) + len(watch.settle_rss),
        "samples_after_warmup": len(after),
        "rss_end_of_input_mib": round((rss[-1][1] or 0) / MIB, 1) if rss else None,
        "rss_by_tenth_of_input_mib": by_tenth,
        "warmup_fraction": warmup,
        "rss_first_mib": round((rss[0][1] or 0) / MIB, 1),
        "rss_start_mib": round(start / MIB, 1),
        "rss_max_mib": round(top / MIB, 1),
        "rss_end_mib": round(end / MIB, 1),
        "growth_max_vs_start": round(growth, 4),
        "end_vs_start": round(end / start - 1, 4),
        "target_growth": TARGET_RSS_GROWTH,
        "target_met": growth <= TARGET_RSS_GROWTH,
    }


async def run_workers(
    workdir: Path,
    name: str,
    doc: dict[str, Any],
    profile_procs: int,
    separate_detect: bool,
    total: int,
    limit_s: float,
    quiet_s: float,
    py_spy: Path | None = None,
) -> tuple[Watch, set[tuple[str, str]], dict[str, Any]]:
    """Run worker processes on the events topic of ``doc`` until it is consumed and settled.

    ``py_spy``: a directory; the separate detect process is sampled by ``py-spy record``
    (attached once its start-up is done, ``--nonblocking``) into ``<name>-detect.txt`` there
    (folded stacks), until it stops."""
    load = loadavg()
    stage = "profile" if separate_detect else "all"
    procs = [
        WorkerProcess(workdir, f"{name}-{i}", doc, stage).start() for i in range(profile_procs)
    ]
    others = []
    if separate_detect:
        others.append(WorkerProcess(workdir, f"{name}-detect", doc, "detect").start())
    started = time.time()
    detect_cpu: list[float | None] = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        if others:  # stage 2's own CPU from when its metrics answer (start-up done)
            await _metrics_up(others[0], limit_s)
            detect_cpu.append(proc_cpu_s(others[0].pid))
            if py_spy is not None:
                spy = start_py_spy(others[0].pid, py_spy / f"{name}-detect.txt")
        watch = await watch_consumption(procs, total, limit_s, others=others)
        consumed = time.time()
        settle_rss: list[tuple[float, int]] = []
        settled = await wait_settled(
            [*procs, *others],
            quiet_s,
            limit_s,
            partials=(doc["kafka"]["bootstrap_servers"], doc["topics"]["partials"]),
            rss=settle_rss,
        )
        quiet = time.time()
        watch.settle_rss = [r for _, r in settle_rss]
        if others:
            detect_cpu.append(proc_cpu_s(others[0].pid))
    finally:
        stop_all([*procs, *others])
        if spy is not None:
            spy.wait(timeout=60)  # it writes its file once the process is gone
    alerts = transitions(await read_all(doc["kafka"]["bootstrap_servers"], doc["topics"]["alerts"]))
    first = next((s.t for s in watch.samples if s.consumed > 0), consumed)
    info = {
        "load": [load, loadavg()],
        "settled": settled,
        "phases_s": {  # start to first event, to the end of the input, to quiet, to stopped
            "start": round(first - started, 1),
            "consume": round(consumed - first, 1),
            "settle": round(quiet - consumed, 1),
            "stop": round(time.time() - quiet, 1),
        },
    }
    # the metric counts comparisons (input x scope x statistic), not windows
    comparisons = settled.get("driftwire_windows_evaluated_total", 0.0)
    if len(detect_cpu) == 2 and None not in detect_cpu and comparisons > 0:
        cpu_s = float(detect_cpu[1] or 0.0) - float(detect_cpu[0] or 0.0)
        # all of stage 2 (reading and merging partials, every comparison, alerts, the
        # changelog) over the comparisons it evaluated
        info["detect_cpu_s"] = round(cpu_s, 2)
        info["detect_cpu_ms_per_comparison"] = round(cpu_s / comparisons * 1000, 3)
    return watch, alerts, info


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` (folded stacks, 100 Hz, without pausing it) into ``out``."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--py-spy needs py-spy: pip install py-spy")
    cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100"]
    return subprocess.Popen(
        [*cmd, "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


_LINE = re.compile(r":\d+\)$")


def folded_summary(path: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's folded stacks: the functions with the largest shares of the samples,
    including what they call (``inclusive``) and on their own (``self``)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]  # per function
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def share(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(n / max(1, total), 4)) for frame, n in ranked]

    return {"samples": [("all", float(total))], "inclusive": share(inclusive), "self": share(own)}


async def _metrics_up(proc: WorkerProcess, limit_s: float) -> None:
    """Until ``proc``'s metrics endpoint answers with driftwire metrics."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        proc.check()
        if (await asyncio.to_thread(proc.scrape)).values:
            return
        await asyncio.sleep(0.25)


# -- latency ---------------------------------------------------------------------------------


def window_end_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def start_latency_worker(
    bootstrap: str, prefix: str, workdir: Path, args: argparse.Namespace
) -> WorkerProcess:
    """The worker of the latency run: short buckets, no lateness, 2-bucket windows."""
    topic = f"{prefix}.latency"
    await create_topic(bootstrap, topic, PARTITIONS)
    doc = settings_doc(
        bootstrap,
        topic,
        "worker",
        profile={"bucket_seconds": args.latency_bucket_seconds, "allowed_lateness_seconds": 0},
        detect={"window_buckets": 2, "consecutive_windows": 1},
        data_dir=workdir,
    )
    return WorkerProcess(workdir, "latency", doc, "all").start()


async def run_latency(
    bootstrap: str, worker: WorkerProcess, args: argparse.Namespace
) -> dict[str, Any]:
    """Paced events with event time = wall time; from each window's close to its alert."""
    load = loadavg()
    bucket_ms = int(args.latency_bucket_seconds * 1000)
    rate = args.latency_rate
    doc = worker.doc
    topic = doc["topics"]["events"]
    alerts: list[tuple[float, float, dict[str, Any]]] = []  # arrival, produced, data
    closes: dict[int, float] = {}  # bucket boundary -> when the first event at/after it was sent
    changes: list[Change] = []
    try:
        deadline = time.monotonic() + 120
        while True:  # both stages own their partitions before anything is produced
            worker.check()
            m = (await asyncio.to_thread(worker.scrape)).values
            if (
                m.get("driftwire_assigned_partitions") == PARTITIONS
                and m.get("driftwire_detect_assigned_partitions", 0) > 0
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"latency worker not ready:\n{worker.log_tail()}")
            await asyncio.sleep(0.25)
        start_ms = int(time.time() * 1000) + 200
        first_bucket = start_ms - start_ms % bucket_ms
        warm, duration, tail = 3, 2, 2  # buckets: reference, each change, after the last
        probe = loadgen.build_spec(events=1, segments=args.latency_segments)[0]
        features = numeric_names(probe)
        segments = [f"region={r},tier={t}" for r in probe.regions for t in probe.tiers]
        for k in range(args.latency_changes):
            begin = first_bucket + (warm + k) * bucket_ms
            changes.append(
                Change(
                    features[k % len(features)],
                    begin,
                    2.0,
                    segments[k % len(segments)],
                    end_ms=begin + duration * bucket_ms,
                )
            )
        end_ms = first_bucket + (warm + args.latency_changes + duration + tail) * bucket_ms
        total = int((end_ms - start_ms) / 1000 * rate)
        [spec] = loadgen.build_spec(
            events=total,
            seed=31,
            segments=args.latency_segments,
            events_per_second=rate,
            start_ms=start_ms,
            changes=changes,
        )
        consumer_task = asyncio.create_task(
            collect_alerts(bootstrap, doc["topics"]["alerts"], alerts)
        )
        try:
            await produce_paced(bootstrap, topic, spec, closes, bucket_ms, worker)
            await wait_settled(
                [worker],
                args.quiet_seconds + 1,
                args.limit_seconds,
                partials=(bootstrap, doc["topics"]["partials"]),
            )
            await asyncio.sleep(0.5)
        finally:
            consumer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer_task
    finally:
        stop_all([worker])

    # when stage 1 declared each window complete: per input partition the first watermark
    # record at or past the window's end; the last of them completes it for stage 2
    complete_at: dict[int, float] = {}
    first_mark: dict[tuple[int, int], float] = {}
    marks = [
        (orjson.loads(r.value), r.timestamp / 1000)
        for r in await read_all(bootstrap, doc["topics"]["partials"])
    ]
    for end in closes:
        for rec, ts in marks:
            if rec.get("type") == "watermark" and rec["watermark_ms"] >= end:
                key = (end, rec["source"]["partition"])
                first_mark[key] = min(first_mark.get(key, ts), ts)
        seen = [t for (e, _), t in first_mark.items() if e == end]
        if len(seen) == PARTITIONS:
            complete_at[end] = max(seen)
    n_marks = sum(rec.get("type") == "watermark" for rec, _ in marks)
    span = (max(t for _, t in marks) - min(t for _, t in marks)) if marks else 0.0
    samples: list[dict[str, Any]] = []
    for arrived, created, data in alerts:
        window = data.get("window") or {}
        if not window.get("end"):
            continue
        end = window_end_ms(window["end"])
        closed = closes.get(end)
        if closed is None:
            continue  # closed by the end of the stream (idle), not by an event
        marked = complete_at.get(end)
        samples.append(
            {
                "status": data["status"],
                "kind": data["labels"].get("kind", ""),
                "feature": data["labels"].get("feature", ""),
                "segment": data["labels"].get("segment", ""),
                "window_end_ms": end,
                "latency_s": round(arrived - closed, 3),
                # where the time went: stage 1 (close -> last watermark produced), stage 2
                # (-> alert produced), delivery (-> read by a subscriber)
                "profile_stage_s": None if marked is None else round(marked - closed, 3),
                "detect_stage_s": None if marked is None else round(created - marked, 3),
                "delivery_s": round(arrived - created, 3),
            }
        )
    delays = []
    for change in changes:
        fired = [
            arrived
            for arrived, _, data in alerts
            if data["status"] == "firing"
            and data["labels"].get("feature") == change.target
            and data["labels"].get("segment") == change.segment
        ]
        if fired and change.start_ms in closes:
            delays.append(round(min(fired) - closes[change.start_ms], 3))
    latencies = [s["latency_s"] for s in samples]
    p99 = percentile(latencies, 99)

    def median_of(key: str) -> float | None:
        return percentile([s[key] for s in samples if s[key] is not None], 50)

    target = args.latency_bucket_seconds + 2
    return {
        "bucket_seconds": args.latency_bucket_seconds,
        "event_rate": rate,
        "segments": args.latency_segments,
        "changes": len(changes),
        "alerts": len(alerts),
        "samples": len(samples),
        "p50_s": percentile(latencies, 50),
        "p99_s": p99,
        "min_s": min(latencies) if latencies else None,
        "max_s": max(latencies) if latencies else None,
        "target_p99_s": target,
        "target_met": p99 is not None and p99 <= target,
        "partials_topic_records": len(marks),
        "partials_topic_watermarks_per_s": round(n_marks / span) if span else None,
        "median_profile_stage_s": median_of("profile_stage_s"),
        "median_detect_stage_s": median_of("detect_stage_s"),
        "median_delivery_s": median_of("delivery_s"),
        "change_to_alert_s": delays,
        "latencies": samples,
        "load": [load, loadavg()],
    }


async def produce_paced(
    bootstrap: str,
    topic: str,
    spec: StreamSpec,
    closes: dict[int, float],
    bucket_ms: int,
    worker: WorkerProcess,
) -> None:
    """Send event i once the wall clock reaches its timestamp; note every bucket's first send."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    try:
        pending: list[Awaitable[Any]] = []
        bucket = None
        for i, value in enumerate(generate(spec)):
            ts = spec.start_ms + int(i * 1000.0 / spec.events_per_second)
            ahead = ts / 1000 - time.time()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            start = ts - ts % bucket_ms
            if start != bucket:
                bucket = start
                closes[start] = time.time()
                worker.check()
            pending.append(await producer.send(topic, value, partition=i % PARTITIONS))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def collect_alerts(
    bootstrap: str, topic: str, into: list[tuple[float, float, dict[str, Any]]]
) -> None:
    """Append (arrival, production time, alert data) for every alert until cancelled."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        parts: list[TopicPartition] = []
        while not parts:
            with contextlib.suppress(KafkaError):
                await consumer._client._wait_on_metadata(topic)
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            if not parts:
                await asyncio.sleep(0.5)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            arrived = time.time()
            for records in batch.values():
                for r in records:
                    into.append((arrived, r.timestamp / 1000, orjson.loads(r.value)["data"]))
    finally:
        await consumer.stop()


# -- scale -----------------------------------------------------------------------------------


def parse_grid(text: str) -> list[tuple[int, int]]:
    """``"1x12,100x500"`` -> [(1, 12), (100, 500)] (segments x features)."""
    cells = []
    for part in text.split(","):
        segments, features = part.lower().split("x")
        cells.append((int(segments), int(features)))
    return cells


async def run_scale(bootstrap: str, prefix: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for segments, features in parse_grid(args.grid):
        load = loadavg()
        # fewer events where every event costs more: bounded time per cell
        budget = args.grid_values // features // (1 + segments // 100)
        events = max(args.grid_min_events, min(args.grid_max_events, budget))
        numeric = round(features * 2 / 3)
        topic = f"{prefix}.scale-{segments}x{features}"
        buckets = 2
        specs = loadgen.build_spec(
            events=events,
            seed=41,
            numeric=numeric,
            categorical=features - numeric,
            segments=segments,
            events_per_second=events / (buckets * 60),  # exactly two 60-second buckets
        )
        report = await loadgen.produce(bootstrap, topic, specs, partitions=PARTITIONS)
        doc = settings_doc(
            bootstrap, topic, "profile", profile={"max_segments": max(segments, 200)}
        )
        settings = Settings.model_validate(doc)
        row: dict[str, Any] = {"segments": segments, "features": features, "events": events}
        try:
            result = await run_profile_stage(settings, report.events, args.limit_seconds)
        except (RuntimeError, TimeoutError, KafkaError) as exc:
            row.update(error=repr(exc)[:300], load=[load, loadavg()])
            rows.append(row)
            continue
        per_bucket = result["partial_bytes"] / buckets
        row.update(
            events_per_s=result["events_per_s"],
            feature_values_per_s=(
                result["events_per_s"] * features if result["events_per_s"] else None
            ),
            bytes_per_event=round(report.bytes / max(1, report.events)),
            events_per_bucket=events // buckets,
            state_bytes_per_bucket=round(per_bucket),
            state_bytes_per_segment_feature=round(per_bucket / (segments * features)),
            partials=result["partials"],
            max_partial_bytes=result["max_partial_bytes"],
            fits_default_message_size=result["max_partial_bytes"] <= DEFAULT_MESSAGE_LIMIT,
            load=[load, loadavg()],
        )
        rows.append(row)
        print(f"  scale {segments} x {features}: {row}", file=sys.stderr)
    return rows


# -- hot path --------------------------------------------------------------------------------


def hot_path(profiler: cProfile.Profile, top: int = 25) -> dict[str, Any]:
    stats = pstats.Stats(profiler)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    cumulative = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])[:top]  # type: ignore[attr-defined]
    return {
        "total_s": round(total, 3),
        "top_tottime": [
            {
                "function": f"{Path(f).name}:{line}({name})",
                "tottime_s": round(v[2], 3),
                "share": round(v[2] / total, 3) if total else None,
                "cumtime_s": round(v[3], 3),
                "calls": v[1],
            }
            for (f, line, name), v in rows
        ],
        "top_cumtime": [
            {
                "function": f"{Path(f).name}:{line}({name})",
                "cumtime_s": round(v[3], 3),
                "share": round(v[3] / total, 3) if total else None,
            }
            for (f, line, name), v in cumulative
        ],
        "report": text.getvalue(),
    }


# -- the run ---------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"driftwire pipeline benchmark  {result['started_at']}  quick={result['quick']}",
        f"machine: {m['cores']} cores ({m['cpu_model'] or 'cpu ?'}), load average "
        f"{m['load_start']} at start, {m.get('load_end')} at end; broker: "
        f"{result['broker']['kind']} Kafka {result['broker']['version']}",
        "",
        f"{'section':<15}{'figure':<38}{'value':>14}  load 1m start/end",
    ]

    def row(section: str, figure: str, value: Any, load: Any = None) -> None:
        where = "" if not load else f"{load[0][0]:.2f}/{load[1][0]:.2f}"
        lines.append(f"{section:<15}{figure:<38}{fmt(value):>14}  {where}")

    if d := result.get("dataset"):
        row("dataset", "events (produced, 4 partitions)", d["events"], d["load"])
        row("dataset", "models/versions/features/segments", d["shape"])
        row("dataset", "bytes per event", d["bytes_per_event"])
        row("dataset", "produce events/s", d["produce_events_per_s"])
    if c := result.get("ceiling"):
        row("ceiling", "events/s (getmany + orjson.loads)", c["events_per_s"], c["load"])
        row("ceiling", "CPU s per million events", c["cpu_s_per_million_events"])
    if p := result.get("profile_stage"):
        row("profile stage", "events/s (in-process)", p["events_per_s"], p["load"])
        row("profile stage", "ratio to ceiling (target >= 0.5)", p["ratio_to_ceiling"])
        row("profile stage", "target met", p["target_met"])
        row("profile stage", "CPU-time ratio to ceiling", p.get("cpu_ratio_to_ceiling"))
        row("profile stage", "CPU s per million events", p["cpu_s_per_million_events"])
    if e := result.get("profile_stage_eos"):
        row("profile stage, exactly-once", "events/s (in-process)", e["events_per_s"], e["load"])
        row("profile stage, exactly-once", "ratio to at-least-once", e["ratio_to_at_least_once"])
        row(
            "profile stage, exactly-once", "CPU s per million events", e["cpu_s_per_million_events"]
        )
    if h := result.get("hot_path"):
        row("hot path", "events/s under cProfile", h["events_per_s_under_cprofile"])
        for entry in h["top_tottime"][:8]:
            row("hot path", entry["function"][:37], f"{entry['share']:.1%}")
    if w := result.get("worker"):
        row("worker", "events/s reading the input", w["events_per_s"], w["load"])
        row("worker", "CPU s per million events, then", w["cpu_s_per_million_events"])
        row("worker", "events/s to the last alert", w.get("end_to_end_events_per_s"))
        cpu_to_end = w.get("end_to_end_cpu_s_per_million_events")
        row("worker", "CPU s per million, to the last", cpu_to_end)
        row("worker", "alert transitions", w["alerts"])
    if s := result.get("scale_out"):
        one, two = s["one"], s["two"]
        row("scale-out", "1 profile process: events/s", one["events_per_s"], one["load"])
        row("scale-out", "2 profile processes: events/s", two["events_per_s"], two["load"])
        row("scale-out", "speed-up (2 vs 1)", s["speedup"])
        for name in ("one", "two"):
            if (ms := s[name].get("detect_cpu_ms_per_window")) is not None:
                per = s[name]["comparisons_per_window"]
                row("scale-out", f"stage 2 CPU ms per window of {per} ({name})", ms)
        row("scale-out", "alerts: 2 processes = 1 worker", s["alerts_match_worker"])
        row("scale-out", "alerts: 2 processes = 1 process", s["alerts_match_one"])
    if mem := result.get("memory"):
        row("memory", f"events in the run ({mem['source']})", mem["events"], mem["load"])
        row("memory", "RSS MiB after warm-up (start)", mem["rss_start_mib"])
        row("memory", "RSS MiB max", mem.get("rss_max_mib"))
        row("memory", "RSS MiB end", mem.get("rss_end_mib"))
        row("memory", "growth max/start (target <= 0.10)", mem.get("growth_max_vs_start"))
        row("memory", "target met", mem.get("target_met"))
    if lat := result.get("latency"):
        row(
            "latency",
            "bucket s / changes / samples",
            f"{lat['bucket_seconds']:g} / {lat['changes']} / {lat['samples']}",
            lat["load"],
        )
        row("latency", "window close -> alert p50 s", lat["p50_s"])
        row("latency", "window close -> alert p99 s", lat["p99_s"])
        row("latency", f"target p99 <= {lat['target_p99_s']:g} s met", lat["target_met"])
        row(
            "latency",
            "median in stage 1 / stage 2 / delivery",
            "/".join(
                fmt(lat[k])
                for k in ("median_profile_stage_s", "median_detect_stage_s", "median_delivery_s")
            ),
        )
    for name, error in result.get("errors", {}).items():
        lines.append(f"{'ERROR':<15}{name:<38}{error[:200]}")
    if cells := result.get("scale"):
        lines.append("")
        lines.append(
            f"{'segments':>9}{'features':>9}{'events':>9}{'events/s':>10}{'state B/bucket':>16}"
            f"{'max partial B':>15}{'<=1MiB':>7}  load 1m start/end"
        )
        for cell in cells:
            where = f"{cell['load'][0][0]:.2f}/{cell['load'][1][0]:.2f}"
            head = f"{cell['segments']:>9}{cell['features']:>9}{cell['events']:>9,}"
            if "error" in cell:
                lines.append(f"{head}  error: {cell['error'][:70]}  {where}")
                continue
            lines.append(
                f"{head}{fmt(cell['events_per_s']):>10}{fmt(cell['state_bytes_per_bucket']):>16}"
                f"{fmt(cell['max_partial_bytes']):>15}"
                f"{fmt(cell['fits_default_message_size']):>7}  {where}"
            )
    return "\n".join(lines)


SECTIONS = (
    "ceiling",
    "profile_stage",
    "profile_stage_eos",
    "worker",
    "memory",
    "scale_out",
    "latency",
    "scale",
)


async def bench(args: argparse.Namespace, bootstrap: str, broker: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "broker": broker,
        "detect_rule": args.rule or "default",
        "wall_seconds": {},
    }
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="driftwire-bench-"))
    limit = args.limit_seconds
    quiet = args.quiet_seconds
    clock = time.monotonic()
    latency_worker: WorkerProcess | None = None
    errors: dict[str, str] = {}
    result["errors"] = errors

    async def attempt(name: str, work: Awaitable[Any]) -> Any:
        """``await work``; a failure is recorded under ``errors`` and the run goes on."""
        try:
            return await work
        except Exception as exc:  # one broken section must not lose the figures of the others
            errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
            traceback.print_exc()
            return None

    def done(section: str) -> None:
        nonlocal clock
        result["wall_seconds"][section] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()
        shown = result.get(section)
        if isinstance(shown, dict):
            shown = {k: v for k, v in shown.items() if k != "latencies"}
        print(f"{section} ({result['wall_seconds'][section]} s): {shown}", file=sys.stderr)

    try:
        # the events: 12 features x 8 segments x 2 versions, a drift in one segment halfway
        events_topic = f"{prefix}.events"
        total = 0
        if only & {"ceiling", "profile_stage", "profile_stage_eos", "worker", "scale_out"} or (
            "memory" in only and not args.memory_events
        ):
            minutes = args.event_minutes
            specs = loadgen.build_spec(
                events=args.events,
                seed=7,
                versions=2,
                numeric=8,
                categorical=4,
                segments=8,
                events_per_second=args.events / (minutes * 60),
                drift=("income", minutes // 2),
                drift_segment=DRIFT_SEGMENT,
            )
            load = loadavg()
            report = await loadgen.produce(bootstrap, events_topic, specs, partitions=PARTITIONS)
            total = await topic_size(bootstrap, events_topic)
            result["dataset"] = {
                "events": total,
                "shape": "1/2/12/8",
                "models": 1,
                "versions": 2,
                "features": 12,
                "segments": 8,
                "bytes": report.bytes,
                "bytes_per_event": round(report.bytes / max(1, report.events)),
                "partitions": PARTITIONS,
                "event_time_minutes": minutes,
                "drift": f"income +1.5 sd in {DRIFT_SEGMENT} from minute {minutes // 2}",
                "produce_events_per_s": round(report.events_per_second),
                "load": [load, loadavg()],
            }
            done("dataset")

        if "ceiling" in only:
            ceiling_result = await attempt(
                "ceiling", run_ceiling(bootstrap, events_topic, total, limit)
            )
            if ceiling_result is not None:
                result["ceiling"] = ceiling_result
            done("ceiling")

        stage: dict[str, Any] | None = None
        if "profile_stage" in only:
            doc = settings_doc(bootstrap, events_topic, "stage")
            stage = await attempt(
                "profile_stage", run_profile_stage(Settings.model_validate(doc), total, limit)
            )
        if "profile_stage" in only and stage is not None:
            ceiling = result.get("ceiling", {}).get("events_per_s")
            rate = stage["events_per_s"]
            ratio = rate / ceiling if ceiling and rate else None
            stage["ratio_to_ceiling"] = None if ratio is None else round(ratio, 3)
            # the same in CPU time: what a dedicated core would give, less sensitive to load
            ceiling_cpu = result.get("ceiling", {}).get("cpu_s_per_million_events")
            stage_cpu = stage["cpu_s_per_million_events"]
            stage["cpu_ratio_to_ceiling"] = (
                round(ceiling_cpu / stage_cpu, 3) if ceiling_cpu and stage_cpu else None
            )
            stage["target_ratio"] = TARGET_RATIO
            stage["target_met"] = ratio is not None and ratio >= TARGET_RATIO
            result["profile_stage"] = stage
            done("profile_stage")

        if "profile_stage_eos" in only:
            doc = settings_doc(bootstrap, events_topic, "stage-eos", guarantee="exactly_once")
            eos = await attempt(
                "profile_stage_eos", run_profile_stage(Settings.model_validate(doc), total, limit)
            )
            if eos is not None:
                base = (result.get("profile_stage") or {}).get("events_per_s")
                rate = eos["events_per_s"]
                eos["ratio_to_at_least_once"] = round(rate / base, 3) if base and rate else None
                result["profile_stage_eos"] = eos
            done("profile_stage_eos")

        profiler = cProfile.Profile()
        profiled = None
        if args.hot_path:
            doc = settings_doc(bootstrap, events_topic, "hot")
            profiled = await attempt(
                "hot_path",
                run_profile_stage(Settings.model_validate(doc), total, limit, profiler=profiler),
            )
        if profiled is not None:
            result["hot_path"] = {
                "events_per_s_under_cprofile": profiled["events_per_s"],
                **hot_path(profiler),
            }
            print(result["hot_path"].pop("report"), file=sys.stderr)
            done("hot_path")

        # worker processes: the whole worker, then one and two profile processes (a quick run
        # takes the whole worker for "one" and runs the other beside it, to save start-ups)
        runs: dict[str, tuple[int, bool]] = {}
        if only & {"worker", "scale_out"} or ("memory" in only and not args.memory_events):
            runs["worker"] = (1, False)
        if "scale_out" in only:
            if not args.quick:
                runs["scaleout1"] = (1, True)
            runs["scaleout2"] = (2, True)
        outcomes: dict[str, tuple[Watch, set[tuple[str, str]], dict[str, Any]]] = {}

        async def one_run(name: str) -> None:
            rule = {"rule": args.rule} if args.rule else None
            doc = settings_doc(bootstrap, events_topic, name, detect=rule, data_dir=workdir)
            procs, separate = runs[name]
            outcome = await attempt(
                name,
                run_workers(workdir, name, doc, procs, separate, total, limit, quiet, args.py_spy),
            )
            if outcome is not None:
                outcomes[name] = outcome
                sampled = None if args.py_spy is None else args.py_spy / f"{name}-detect.txt"
                if sampled is not None and sampled.exists():
                    outcome[2]["py_spy"] = folded_summary(sampled)

        if args.quick and "latency" in only:  # let it start up beside the others
            latency_worker = await start_latency_worker(bootstrap, prefix, workdir, args)
        if args.quick:
            await asyncio.gather(*(one_run(name) for name in runs))
            done("worker_runs")
        else:
            for name in runs:
                await one_run(name)
                done(name)
        if args.quick and "worker" in outcomes:
            outcomes["scaleout1"] = outcomes["worker"]

        worker_alerts: set[tuple[str, str]] = set()
        if "worker" in outcomes:
            worker_watch, worker_alerts, info = outcomes["worker"]
            rate, cpu, counted = worker_watch.throughput()
            first = next((x for x in worker_watch.samples if x.consumed > 0), None)
            settled = info["settled"]
            end_to_end = cpu_to_end = None
            if first is not None and settled["last_change_t"] > first.t:
                end_to_end = round(counted / (settled["last_change_t"] - first.t))
                if first.cpu_s is not None and "last_change_cpu_s" in settled:
                    cpu_to_end = settled["last_change_cpu_s"] - first.cpu_s
            result["worker"] = {
                "events_per_s": None if rate is None else round(rate),
                "cpu_s_per_million_events": per_million(cpu, counted),
                # until stage 2 has turned the last partial into evaluations and alerts
                "end_to_end_events_per_s": end_to_end,
                "end_to_end_cpu_s_per_million_events": per_million(cpu_to_end, counted),
                "alerts": len(worker_alerts),
                "alert_statuses": sorted({status for _, status in worker_alerts}),
                **info,
            }

        if "memory" in only:
            if args.memory_events:
                memory_topic = f"{prefix}.memory"
                memory_specs = loadgen.build_spec(
                    events=args.memory_events,
                    seed=9,
                    versions=2,
                    segments=8,
                    events_per_second=args.memory_event_rate,
                )
                await loadgen.produce(bootstrap, memory_topic, memory_specs, partitions=PARTITIONS)
                memory_total = await topic_size(bootstrap, memory_topic)
                memory_doc = settings_doc(bootstrap, memory_topic, "memory", data_dir=workdir)
                outcome = await attempt(
                    "memory",
                    run_workers(
                        workdir, "memory", memory_doc, 1, False, memory_total, limit * 10, quiet
                    ),
                )
            if args.memory_events and outcome is not None:
                memory_watch, _, memory_info = outcome
                result["memory"] = {
                    "events": memory_total,
                    "source": "separate run",
                    **memory_figures(memory_watch, args.warmup),
                    "load": memory_info["load"],
                }
            elif not args.memory_events and "worker" in outcomes:
                result["memory"] = {
                    "events": total,
                    "source": "worker run",
                    **memory_figures(outcomes["worker"][0], args.warmup),
                    "load": result["worker"]["load"],
                }
            done("memory")

        if "scale_out" in only and {"scaleout1", "scaleout2"} <= set(outcomes):
            scale_out: dict[str, Any] = {}
            sets: dict[str, set[tuple[str, str]]] = {}
            for n, name in ((1, "one"), (2, "two")):
                watch, sets[name], info = outcomes[f"scaleout{n}"]
                rate, cpu, counted = watch.throughput()
                scale_out[name] = {
                    "processes": n,
                    "events_per_s": None if rate is None else round(rate),
                    "cpu_s_per_million_events": per_million(cpu, counted),
                    "per_process": watch.per_process,
                    "alerts": len(sets[name]),
                    **info,
                }
            one, two = scale_out["one"]["events_per_s"], scale_out["two"]["events_per_s"]
            scale_out["speedup"] = round(two / one, 3) if one and two else None
            # stage 2 per evaluated window: every input (features, score, label) x every scope
            shape = result.get("dataset", {})
            per_window = (shape.get("features", 0) + 2) * (shape.get("segments", 0) + 1)
            for side in (scale_out["one"], scale_out["two"]):
                ms = side.get("detect_cpu_ms_per_comparison")
                if ms is not None and per_window:
                    side["comparisons_per_window"] = per_window
                    side["detect_cpu_ms_per_window"] = round(ms * per_window, 1)
            scale_out["alerts_match_worker"] = sets["two"] == worker_alerts
            scale_out["alerts_match_one"] = sets["two"] == sets["one"]
            scale_out["alerts_only_with_two"] = sorted(map(list, sets["two"] - worker_alerts))
            scale_out["alerts_only_with_worker"] = sorted(map(list, worker_alerts - sets["two"]))
            # quick: "one" is the whole worker, and it ran beside "two" (figures meaningless)
            scale_out["one"]["source"] = "worker run" if args.quick else "profile + detect"
            result["scale_out"] = scale_out

        if "latency" in only:
            if latency_worker is None:
                latency_worker = await start_latency_worker(bootstrap, prefix, workdir, args)
            latency = await attempt("latency", run_latency(bootstrap, latency_worker, args))
            if latency is not None:
                result["latency"] = latency
            done("latency")

        if "scale" in only:
            cells = await attempt("scale", run_scale(bootstrap, prefix, args))
            if cells is not None:
                result["scale"] = cells
            done("scale")
    finally:
        if latency_worker is not None:
            stop_all([latency_worker])
        result["machine"]["load_end"] = loadavg()
        if not args.keep_topics:
            with contextlib.suppress(KafkaError, OSError):
                await delete_topics(bootstrap, prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny smoke run (about a minute)")
    ap.add_argument("--events", type=int, help="events of the main topic (default 500,000)")
    ap.add_argument("--event-minutes", type=int, help="event time they span (16, quick 6)")
    ap.add_argument(
        "--memory-events",
        type=int,
        default=0,
        help="a separate long run for RSS (the issue: 10,000,000); 0 = sample the worker run",
    )
    ap.add_argument("--memory-event-rate", type=float, default=1000.0, help="of that run")
    ap.add_argument("--warmup", type=float, default=0.4, help="fraction of events before RSS")
    ap.add_argument("--latency-bucket-seconds", type=float, help="default 10 (quick: 1)")
    ap.add_argument("--latency-rate", type=float, help="events/s (default 2000, quick 1000)")
    ap.add_argument("--latency-changes", type=int, help="injected changes (default 5)")
    ap.add_argument("--latency-segments", type=int, help="segments (default 8, quick 1)")
    ap.add_argument(
        "--grid",
        help="segments x features cells (default 1x12,100x12,1000x12,1x100,...,1000x500)",
    )
    ap.add_argument("--grid-values", type=int, default=1_200_000, help="events x features per cell")
    ap.add_argument("--grid-min-events", type=int, default=1_000)
    ap.add_argument("--grid-max-events", type=int, default=50_000)
    ap.add_argument("--quiet-seconds", type=float, help="how long alerts must be stable (5)")
    ap.add_argument("--limit-seconds", type=float, default=900.0, help="per measured run")
    ap.add_argument("--hot-path", action="store_true", help="cProfile a second profile-stage run")
    ap.add_argument(
        "--rule",
        choices=("calibrated", "fixed"),
        help="detect.rule of the worker and scale-out runs (default: the default, calibrated)",
    )
    ap.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample the separate detect processes with py-spy into DIR (folded stacks)",
    )
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    ap.add_argument("--keep-topics", action="store_true", help="do not delete the bench topics")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    quick = args.quick
    defaults = {
        "events": 3_000 if quick else 500_000,
        "event_minutes": 6 if quick else 16,
        "latency_bucket_seconds": 1.0 if quick else 10.0,
        "latency_rate": 1000.0 if quick else 2000.0,
        "latency_changes": 1 if quick else 5,
        "latency_segments": 1 if quick else 8,
        "grid": "8x12"
        if quick
        else ("1x12,100x12,1000x12,1x100,100x100,1000x100,1x500,100x500,1000x500"),
        "quiet_seconds": 1.5 if quick else 5.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.grid_values = min(args.grid_values, 12_000)
        args.grid_min_events = min(args.grid_min_events, 1_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tune_gc()  # the GC settings of ``driftwire worker``, for the ceiling and the stages alike
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    broker: kafka_broker.KafkaBroker | None = None
    info: dict[str, Any] = {"version": kafka_broker.KAFKA_VERSION}
    if external:
        kafka_broker.check_metadata(external, timeout=15.0)
        bootstrap = external
        info.update(kind="external", bootstrap=external)
    else:
        broker = kafka_broker.KafkaBroker(jvm_options=FAIR_JVM_OPTIONS).start()
        bootstrap = broker.bootstrap_servers
        info.update(kind="local", jvm_options=list(FAIR_JVM_OPTIONS))
    try:
        result = asyncio.run(bench(args, bootstrap, info))
    finally:
        if broker is not None:
            broker.stop()
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
