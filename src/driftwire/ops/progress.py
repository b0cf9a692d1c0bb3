"""Progress of the offline commands on stderr: a tqdm bar on a terminal, else a line now and
then (at most one per ``interval`` seconds), so that a long build in a job's log shows it moves.

>>> import io
>>> ticks = iter([0.0, 1.0, 11.0, 12.0, 30.0])
>>> out = io.StringIO()
>>> with progress_bar(1000, "baseline", stream=out, interval=10.0,
...                   clock=lambda: next(ticks)) as advance:
...     for _ in range(3):
...         advance(250)
>>> print(out.getvalue(), end="")
baseline: 500 rows of 1,000 (50%), 45 rows/s
baseline: 750 rows of 1,000 (75%), done in 30s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

#: Seconds between two progress lines when stderr is not a terminal.
LINE_INTERVAL_SECONDS = 10.0


@contextmanager
def progress_bar(
    total: int | None,
    what: str,
    *,
    unit: str = "rows",
    stream: TextIO | None = None,
    interval: float = LINE_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances the progress by ``n``."""
    out = stream if stream is not None else sys.stderr
    if stream is None and out.isatty():
        bar = tqdm(total=total, desc=what, unit=unit, unit_scale=True, file=out)

        def step(n: int) -> None:
            bar.update(n)

        try:
            yield step
        finally:
            bar.close()
        return
    start = clock()
    state = {"done": 0, "last": start}

    def line(done: int) -> str:
        of = f" of {total:,} ({100 * done // total}%)" if total else ""
        return f"{what}: {done:,} {unit}{of}"

    def advance(n: int) -> None:
        state["done"] += n
        now = clock()
        if now - state["last"] >= interval:
            state["last"] = now
            rate = state["done"] / max(now - start, 1e-9)
            print(f"{line(int(state['done']))}, {rate:,.0f} {unit}/s", file=out, flush=True)

    try:
        yield advance
    finally:
        elapsed = clock() - start
        if elapsed >= interval:  # a short run says nothing
            print(f"{line(int(state['done']))}, done in {elapsed:.0f}s", file=out, flush=True)
