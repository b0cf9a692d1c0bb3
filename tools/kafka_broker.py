"""A real single-node Apache Kafka 4.x broker (KRaft, no Docker) for driftwire's tests.

The broker's jars come from Maven Central (``tools/kafka/pom.xml``) and are cached under
``$DRIFTWIRE_CACHE_DIR/kafka-<version>/libs`` (default ``~/.cache/driftwire``). Java 17+ and,
for the first download only, Maven must be on ``PATH``.

Importable (``KafkaBroker``, ``ensure_distribution``, ``check_metadata``, ``create_topic``) and
runnable: ``python tools/kafka_broker.py`` starts a broker, prints
``KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT`` and runs until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

KAFKA_VERSION = "4.4.0"
"""Must match ``kafka.version`` in tools/kafka/pom.xml."""

TOOLS_DIR = Path(__file__).resolve().parent
POM_PATH = TOOLS_DIR / "kafka" / "pom.xml"

_MARKER = ".complete"
# Jars whose absence means the download is incomplete even if a marker exists.
_REQUIRED_JARS = (
    f"kafka_2.13-{KAFKA_VERSION}.jar",
    f"kafka-clients-{KAFKA_VERSION}.jar",
    f"kafka-server-{KAFKA_VERSION}.jar",
    "log4j-core-",
    "log4j-slf4j-impl-",
    "scala-library-",
)

DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",  # one small heap, no GC threads to spin up
    "-XX:TieredStopAtLevel=1",  # C1 only: faster start-up, plenty for tests
    "-Xshare:auto",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
)

# Small and fast single-node settings on top of the mandatory KRaft keys.
_BASE_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "auto.create.topics.enable": "true",
    "delete.topic.enable": "true",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "background.threads": "2",
    "log.segment.bytes": str(16 * 1024 * 1024),
    "log.index.size.max.bytes": str(1024 * 1024),
    "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
    "controlled.shutdown.enable": "false",
}

_LOG4J2_TEMPLATE = """\
status = warn
name = driftwire-test-broker
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_path}
appender.file.append = true
appender.file.immediateFlush = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
logger.state_change.name = state.change.logger
logger.state_change.level = WARN
# The several-hundred-line "KafkaConfig values:" dumps would push real errors out of the tail.
logger.config_dump.name = org.apache.kafka.common.config.AbstractConfig
logger.config_dump.level = WARN
"""


def cache_dir() -> Path:
    """``$DRIFTWIRE_CACHE_DIR`` or ``~/.cache/driftwire``."""
    env = os.environ.get("DRIFTWIRE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "driftwire"


def distribution_dir() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def _libs_complete(libs: Path) -> bool:
    if not libs.is_dir():
        return False
    names = [p.name for p in libs.iterdir()]
    return all(any(n.startswith(req) for n in names) for req in _REQUIRED_JARS)


def _is_ready(libs: Path, marker: Path, digest: str) -> bool:
    try:
        return marker.read_text().strip() == digest and _libs_complete(libs)
    except OSError:
        return False


def ensure_distribution() -> Path:
    """Return the directory of the broker's jars, downloading them with Maven once.

    A marker file holding the pom's SHA-256 is written after a successful download, so later
    calls only stat a few files; a changed pom or a missing jar triggers a fresh download.
    A file lock makes concurrent callers (``make kafka`` and pytest) wait for one download.
    """
    dist = distribution_dir()
    libs = dist / "libs"
    marker = dist / _MARKER
    digest = _pom_digest()
    if _is_ready(libs, marker, digest):
        return libs

    dist.mkdir(parents=True, exist_ok=True)
    with open(dist / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_ready(libs, marker, digest):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(
                f"Kafka {KAFKA_VERSION} jars are not in {libs} and Maven ('mvn') is not on "
                f"PATH to download them (see {POM_PATH})"
            )
        marker.unlink(missing_ok=True)
        staging = dist / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not _libs_complete(staging):
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                f"downloading Kafka {KAFKA_VERSION} with Maven failed "
                f"(exit {proc.returncode}): {' '.join(cmd)}\n"
                f"--- stdout ---\n{_tail(proc.stdout, 60)}\n"
                f"--- stderr ---\n{_tail(proc.stderr, 60)}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest + "\n")
    return libs


def _tail(text: str, n: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:])


def _file_tail(path: Path | None, n: int) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return _tail(data.decode("utf-8", errors="replace"), n)


def _error_lines(path: Path | None, limit: int = 40) -> str:
    """The first ERROR/FATAL records of a broker log, each with a few continuation lines."""
    if path is None:
        return ""
    picked: list[str] = []
    following = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("["):
                    level = line.partition("] ")[2].split(" ", 1)[0]
                    following = 6 if level in ("ERROR", "FATAL") else 0
                    if following:
                        picked.append(line.rstrip("\n"))
                elif following > 0:
                    following -= 1
                    picked.append(line.rstrip("\n"))
                if len(picked) >= limit:
                    break
    except OSError:
        return ""
    return "\n".join(picked)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _random_cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints (Kafka's Uuid: URL-safe base64, no padding).

    Generated here to save a JVM start; like Kafka, avoid ids starting with '-'.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def _pdeathsig_safe() -> bool:
    """PR_SET_PDEATHSIG fires when the *thread* that forked exits: use it from the main one."""
    return (
        sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
    )


def _parent_death_signal() -> None:  # runs in the child between fork and exec
    """Linux: SIGTERM the broker if the Python process that started it dies (even SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:
        pass


async def _metadata_once(bootstrap_servers: str, request_timeout_ms: int) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=request_timeout_ms,
        client_id="driftwire-test-probe",
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return len(cluster.get("brokers", []))
    finally:
        await admin.close()


def _probe(bootstrap_servers: str, request_timeout_ms: int) -> str | None:
    """One metadata request; ``None`` if it succeeded and lists a broker, else the problem."""
    try:
        brokers = asyncio.run(_metadata_once(bootstrap_servers, request_timeout_ms))
    except Exception as exc:
        return repr(exc)
    return None if brokers > 0 else "metadata response lists no brokers"


def check_metadata(bootstrap_servers: str, timeout: float = 10.0) -> None:
    """Raise ``RuntimeError`` unless a metadata request to the cluster succeeds in time."""
    deadline = time.monotonic() + timeout
    problem = "no attempt made"
    while (remaining := deadline - time.monotonic()) > 0:
        problem = _probe(bootstrap_servers, max(1000, min(5000, int(remaining * 1000)))) or ""
        if not problem:
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"no Kafka metadata from {bootstrap_servers} within {timeout:.0f}s: {problem}"
    )


def create_topic(
    bootstrap_servers: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create a topic (replication factor 1) and wait until every partition has a leader."""

    async def run() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, client_id="driftwire-test-admin"
        )
        try:
            await admin.start()
            await admin.create_topics(
                [NewTopic(name, partitions, 1, topic_configs=dict(config or {}))],
                timeout_ms=int(timeout * 1000),
            )
            deadline = time.monotonic() + timeout
            while True:
                described = await admin.describe_topics([name])
                parts = described[0].get("partitions", []) if described else []
                if (
                    described
                    and described[0].get("error_code", 0) == 0
                    and len(parts) == partitions
                    and all(p.get("leader", -1) >= 0 for p in parts)
                ):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {name!r} has no leaders after {timeout}s")
                await asyncio.sleep(0.05)
        finally:
            await admin.close()

    asyncio.run(run())


class _CdsArchive:
    """A dynamic AppCDS archive for one Java main class: roughly halves JVM start-up.

    JDK 17 has no ``-XX:+AutoCreateSharedArchive``, so the first run dumps the loaded classes
    at exit (``-XX:ArchiveClassesAtExit``) into a temp file that is kept only after a clean
    run; later runs map it (``-XX:SharedArchiveFile``). The file name hashes the JVM, its
    options and the jars, so any change starts a new archive instead of silently not sharing.
    ``DRIFTWIRE_KAFKA_CDS=0`` turns this off.
    """

    def __init__(self, java: str, jvm_options: tuple[str, ...], libs: Path, main: str) -> None:
        self.enabled = os.environ.get("DRIFTWIRE_KAFKA_CDS", "1") != "0"
        java_path = Path(java).resolve()
        jars = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in libs.glob("*.jar"))
        key = json.dumps(
            [str(java_path), java_path.stat().st_mtime_ns, list(jvm_options), jars, main]
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.path = distribution_dir() / "cds" / f"{main}-{digest}.jsa"
        self.pending: Path | None = None

    def options(self) -> list[str]:
        if not self.enabled:
            return []
        if self.path.exists():
            return [f"-XX:SharedArchiveFile={self.path}"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pending = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        return [f"-XX:ArchiveClassesAtExit={self.pending}"]

    def finish(self, ok: bool) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if ok and pending.exists() and pending.stat().st_size > 0:
            os.replace(pending, self.path)
        else:
            pending.unlink(missing_ok=True)


class KafkaBroker:
    """A throw-away single-node Kafka (broker + KRaft controller) on free loopback ports.

    ``extra_properties`` override/extend the generated ``server.properties``.
    Use as a context manager, or call ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        *,
        extra_properties: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        jvm_options: tuple[str, ...] | None = None,
        java: str | None = None,
    ) -> None:
        self.extra_properties = dict(extra_properties or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        env_opts = os.environ.get("DRIFTWIRE_KAFKA_JVM_OPTS")
        if jvm_options is not None:
            self.jvm_options = tuple(jvm_options)
        elif env_opts:
            self.jvm_options = tuple(env_opts.split())
        else:
            self.jvm_options = DEFAULT_JVM_OPTIONS
        self.java = java or _find_java()
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self.console_path: Path | None = None
        self.port: int | None = None
        self.controller_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._broker_cds: _CdsArchive | None = None
        self._final_log_tail = ""

    # -- public API -----------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None or self._proc is None:
            raise RuntimeError("KafkaBroker is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id (to freeze it with SIGSTOP in a test), or ``None``."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> KafkaBroker:
        if self._proc is not None:
            raise RuntimeError("KafkaBroker already started")
        libs = ensure_distribution()
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(libs)
                return self
            except _PortClash:
                self.stop()
                if attempt == attempts:
                    raise RuntimeError(
                        "Kafka broker could not bind its ports after "
                        f"{attempts} attempts\n{self._final_log_tail}"
                    ) from None
        raise AssertionError("unreachable")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, self.stop_timeout)
            if self._broker_cds is not None:
                self._broker_cds.finish(self._ready and proc.returncode in (0, 143))
        self._ready = False
        if self.log_path is not None:
            self._final_log_tail = self.log_tail()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self.log_path = None
            self.console_path = None

    def stop_process(self) -> None:
        """Stop the broker's process (SIGTERM, as an operator would), keeping its ports, its
        configuration and its log directory, so that :meth:`restart` brings the same broker
        back with everything it had written."""
        proc, self._proc = self._proc, None
        if proc is None:
            raise RuntimeError("KafkaBroker is not running")
        _terminate(proc, self.stop_timeout)
        if self._broker_cds is not None:
            self._broker_cds.finish(self._ready and proc.returncode in (0, 143))
        self._ready = False

    def restart(self) -> None:
        """Start the process :meth:`stop_process` stopped: same port, same log directory."""
        if self._proc is not None:
            raise RuntimeError("KafkaBroker is still running")
        if self.workdir is None or self.log_path is None or self.console_path is None:
            raise RuntimeError("KafkaBroker was never started (or was removed by stop())")
        libs = ensure_distribution()
        log4j = self.workdir / "log4j2.properties"
        self._launch(libs, log4j, self.workdir / "server.properties", self.console_path, "ab")

    def log_tail(self, n: int = 80) -> str:
        """The last ``n`` lines of the broker log (the final tail once stopped)."""
        if self.log_path is None or not self.log_path.exists():
            return _tail(self._final_log_tail, n)
        return _file_tail(self.log_path, n)

    def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None
    ) -> None:
        create_topic(self.bootstrap_servers, name, partitions, config)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def format_arguments(self) -> tuple[str, ...]:
        """Extra ``StorageTool format`` arguments (a subclass adds SCRAM credentials)."""
        return ()

    def _write_config(self, workdir: Path) -> tuple[Path, Path]:
        assert self.port is not None and self.controller_port is not None
        props = dict(_BASE_PROPERTIES)
        props.update(
            {
                "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
                "listeners": (
                    f"PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}"
                ),
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "log.dirs": str(workdir / "data"),
            }
        )
        props.update(self.extra_properties)
        server_properties = workdir / "server.properties"
        server_properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = workdir / "log4j2.properties"
        assert self.log_path is not None
        log4j.write_text(_LOG4J2_TEMPLATE.format(log_path=self.log_path.as_posix()))
        return server_properties, log4j

    def _java_cmd(
        self, libs: Path, log4j: Path, cds: _CdsArchive, main: str, *args: str
    ) -> list[str]:
        return [
            self.java,
            *self.jvm_options,
            *cds.options(),
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}{os.sep}*",
            main,
            *args,
        ]

    def _start_once(self, libs: Path) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="driftwire-kafka-"))
        self.log_path = self.workdir / "broker.log"
        self.console_path = self.workdir / "console.log"
        self.port, self.controller_port = _free_ports(2)
        server_properties, log4j = self._write_config(self.workdir)

        format_cds = _CdsArchive(self.java, self.jvm_options, libs, "kafka.tools.StorageTool")
        try:
            fmt = subprocess.run(
                self._java_cmd(
                    libs,
                    log4j,
                    format_cds,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _random_cluster_id(),
                    "-c",
                    str(server_properties),
                    "--standalone",
                    *self.format_arguments(),
                ),
                capture_output=True,
                text=True,
                check=False,
                timeout=self.startup_timeout,
            )
        except subprocess.TimeoutExpired as exc:
            format_cds.finish(False)
            self._fail(
                f"kafka.tools.StorageTool format timed out after {self.startup_timeout:.0f}s",
                console=f"{exc.stdout!r}\n{exc.stderr!r}",
            )
        format_cds.finish(fmt.returncode == 0)
        if fmt.returncode != 0:
            self._fail(
                f"kafka.tools.StorageTool format exited with {fmt.returncode}",
                console=f"{fmt.stdout}\n{fmt.stderr}",
            )

        self._launch(libs, log4j, server_properties, self.console_path, "wb")

    def _launch(
        self, libs: Path, log4j: Path, server_properties: Path, console_path: Path, mode: str
    ) -> None:
        """Start the broker process on ``server_properties`` and wait until it is ready;
        its output goes to ``console_path`` (``mode`` "wb" a new file, "ab" appended)."""
        self._broker_cds = _CdsArchive(self.java, self.jvm_options, libs, "kafka.Kafka")
        # The child keeps its own copy of the descriptor; ours can close at once.
        with open(console_path, mode) as console:
            self._proc = subprocess.Popen(
                self._java_cmd(
                    libs, log4j, self._broker_cds, "kafka.Kafka", str(server_properties)
                ),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_parent_death_signal if _pdeathsig_safe() else None,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + self.startup_timeout
        problem = "broker port never accepted a connection"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._fail(f"kafka.Kafka exited with {code} during start-up")
            if _port_open(self.port):
                problem = _probe(self.bootstrap_servers, 2000) or ""
                if not problem:
                    self._ready = True
                    return
            time.sleep(0.05)
        self._fail(f"Kafka broker not ready within {self.startup_timeout:.0f}s: {problem}")

    def _fail(self, reason: str, console: str | None = None) -> NoReturn:
        if console is None:
            console = _file_tail(self.console_path, 40)
        # Read the log before stop() removes the temp dir.
        log = self.log_tail(80)
        errors = _error_lines(self.log_path)
        clash = "Address already in use" in log or "Address already in use" in console
        self.stop()
        self._final_log_tail = log
        message = (
            f"{reason}\n--- java stdout/stderr (tail) ---\n{_tail(console, 40)}\n"
            + (f"--- first ERROR/FATAL lines of the broker log ---\n{errors}\n" if errors else "")
            + f"--- broker log (tail) ---\n{log}"
        )
        if clash:
            raise _PortClash(message)
        raise RuntimeError(message)


class _PortClash(RuntimeError):
    """A free port was taken between picking it and the broker binding it; retried."""


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("Java 17+ ('java') is needed to run the Kafka test broker")
    return found


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _terminate(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM the broker's process group, SIGKILL it if it is still alive after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    """``python tools/kafka_broker.py``: run a broker until Ctrl-C / SIGTERM.

    ``--ensure`` only fetches the distribution (cached) and exits.
    """
    args = sys.argv[1:] if argv is None else argv
    if args == ["--ensure"]:
        try:
            libs = ensure_distribution()
        except RuntimeError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(f"Kafka {KAFKA_VERSION} jars ready in {libs}", file=sys.stderr)
        return 0
    if args:
        print("usage: python tools/kafka_broker.py [--ensure]", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell's background job starts with SIGINT ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    print(f"starting Kafka {KAFKA_VERSION} …", file=sys.stderr, flush=True)
    try:
        broker = KafkaBroker()
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    try:
        broker.start()
        print(
            f"Kafka ready in {time.monotonic() - t0:.1f}s; log: {broker.log_path}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
        while broker.running:
            time.sleep(0.5)
        print("Kafka broker exited unexpectedly:", file=sys.stderr)
        print(broker.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping Kafka …", file=sys.stderr, flush=True)
        return 0
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
