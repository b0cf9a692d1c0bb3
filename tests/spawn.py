"""Start real processes for a test, each writing its output to a log file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(argv: Sequence[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``cwd``, stdout and stderr to ``log``; the caller stops it."""
    with log.open("wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def spawn_driftwire(args: Sequence[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``driftwire <args>`` (through this interpreter), its output to ``log``."""
    return spawn([sys.executable, "-m", "driftwire.cli.command", *args], log, cwd)


def spawn_prometheus(binary: str, workdir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """A real Prometheus on ``127.0.0.1:port`` with ``workdir/prometheus.yml``."""
    return spawn(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
        workdir,
    )
