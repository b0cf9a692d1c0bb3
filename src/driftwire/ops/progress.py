"""A progress bar on stderr for the offline commands (tqdm), silent when not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(
    total: int | None, what: str, *, unit: str = "rows"
) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances the bar by ``n``."""
    bar = tqdm(
        total=total,
        desc=what,
        unit=unit,
        unit_scale=True,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
    )

    def advance(n: int) -> None:
        bar.update(n)

    try:
        yield advance
    finally:
        bar.close()
