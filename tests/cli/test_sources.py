"""Where ``replay``, ``report`` and ``baseline build`` read events: the options' errors, each one
line with the fix, and an unreachable broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftwire.cli.command", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("replay",), "give either a file of events or --topic (with --since / --until)"),
        (
            ("replay", "x.jsonl", "--since", "2026-01-01T00:00:00Z"),
            "--since / --until select a range of --topic; a file is read whole",
        ),
        (
            ("report", "--topic", "t", "--since", "yesterday"),
            "--since 'yesterday': give a date-time with its offset (2026-01-01T10:00:00Z) or "
            "epoch milliseconds",
        ),
        (
            ("baseline", "build", "--topic", "t", "--since", "2026-01-02T00:00:00Z",
             "--until", "2026-01-01T00:00:00Z", "-o", "b.dwb"),
            "--until 2026-01-01T00:00:00Z is not after --since 2026-01-02T00:00:00Z",
        ),
        (
            ("baseline", "build", "--topic", "t", "--format", "table", "-o", "b.dwb"),
            "--topic holds inference events: drop --format table",
        ),
    ],
)  # fmt: skip
def test_a_wrong_source_is_one_line_with_the_fix(args: tuple[str, ...], message: str) -> None:
    out = run_cli(*args)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"driftwire: {message}"]


def test_an_unreachable_broker_is_one_line_naming_it() -> None:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    out = run_cli("replay", "--topic", "t", env={"DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS": address})
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"driftwire: cannot reach the Kafka brokers {address} (KafkaConnectionError): check "
        "kafka.bootstrap_servers / DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS"
    ]
