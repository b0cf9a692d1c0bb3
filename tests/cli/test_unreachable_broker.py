"""An unreachable broker at start: one line naming it and the retry, retries with backoff, then
one line and a non-zero exit after ``kafka.startup_timeout_seconds``; never a traceback.

The "broker" is a local socket that accepts each connection and closes it at once (a port
nobody answers Kafka on), so the test can count the attempts: with a 2 s limit the backoff
probes at 0, 0.5, 1.5 and 2.0 s -- four connections, no more.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

LIMIT_S = 2
ATTEMPTS = 4  # probes at 0, 0.5, 1.5 and 2.0 s


class ClosingPort:
    """A loopback port that accepts connections and closes them, counting them."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def closing_port() -> Iterator[ClosingPort]:
    port = ClosingPort()
    yield port
    port.close()


def _run(args: list[str], port: int, **extra_env: str) -> tuple[int, list[str], float]:
    env = {
        **os.environ,
        "DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "DRIFTWIRE_KAFKA_STARTUP_TIMEOUT_SECONDS": str(LIMIT_S),
        "DRIFTWIRE_HTTP_PORT": "0",
        "DRIFTWIRE_BRIDGES_HTTP_PORT": "0",
        **extra_env,
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return proc.returncode, proc.stderr.splitlines(), time.monotonic() - started


def _retry_line(port: int) -> str:
    return (
        f"Kafka broker unreachable at 127.0.0.1:{port} (kafka.bootstrap_servers); retrying "
        f"with backoff for up to {LIMIT_S} s (kafka.startup_timeout_seconds)"
    )


def _give_up_prefix(port: int) -> str:
    return (
        f"driftwire: the Kafka broker at 127.0.0.1:{port} (kafka.bootstrap_servers) stayed "
        f"unreachable for {LIMIT_S} s (kafka.startup_timeout_seconds); giving up (last error: "
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["worker"], {}),
        (["bridge", "webhook"], {"DRIFTWIRE_BRIDGES_WEBHOOK_URL": "http://127.0.0.1:9/"}),
    ],
    ids=["worker", "bridge"],
)
def test_a_service_names_the_broker_retries_and_gives_up_in_one_line(
    closing_port: ClosingPort, args: list[str], env: dict[str, str]
) -> None:
    code, lines, elapsed = _run(args, closing_port.port, **env)
    assert code == 1
    assert len(lines) == 2, lines
    first = orjson.loads(lines[0])
    assert (first["level"], first["message"]) == ("warning", _retry_line(closing_port.port))
    assert first["bootstrap_servers"] == f"127.0.0.1:{closing_port.port}"
    assert lines[1].startswith(_give_up_prefix(closing_port.port)), lines[1]
    assert closing_port.connections == ATTEMPTS
    assert LIMIT_S <= elapsed < LIMIT_S + 20


def test_baseline_publish_waits_for_the_broker_the_same_way(
    closing_port: ClosingPort, tmp_path: Path
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(200)))
    args = ["baseline", "build", str(data), "--model", "m", "--model-version", "1"]
    args += ["--output", str(tmp_path / "b.dwb"), "--publish"]
    code, lines, _ = _run(args, closing_port.port)
    assert code == 1
    assert "Traceback" not in "\n".join(lines)
    assert lines[-2] == _retry_line(closing_port.port)
    assert lines[-1].startswith(_give_up_prefix(closing_port.port)), lines[-1]
    assert closing_port.connections == ATTEMPTS
    assert (tmp_path / "b.dwb").is_file()  # the file is written before publishing
