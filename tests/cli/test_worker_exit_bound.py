"""A worker whose stage failed ends within its bound even when something keeps it alive: a
thread that never ends (as a Faust consumer thread that hangs in its stop would) does not
hold the process, which exits with the code given and one line saying why."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

HANGS = """
import logging, threading, time
from driftwire.cli.worker import exit_after
from driftwire.ops.logs import configure_logging
configure_logging("INFO")
threading.Thread(target=lambda: time.sleep(3600), name="stuck", daemon=False).start()
exit_after(0.5, 1, "detect stage failed: the dead-letter topic refused a record")
exit_after(0.5, 1, "armed twice: one timer")
"""


def test_a_thread_that_never_ends_does_not_keep_a_failed_worker_alive() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", HANGS],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert took < 30, took  # the interpreter start, then 0.5 s
    out = done.stdout + done.stderr
    lines = [x for x in out.splitlines() if "did not stop within" in x]
    assert len(lines) == 1, out
    assert "0.5 s after detect stage failed: the dead-letter topic refused a record" in lines[0]


def test_a_worker_that_stops_in_time_is_not_cut_short() -> None:
    code = "from driftwire.cli.worker import exit_after\nexit_after(30, 1, 'x')\n"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 25  # the timer thread does not hold the exit
