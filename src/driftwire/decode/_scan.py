"""One scan of a batch's raw bytes for nested containers and over-long strings.

The scan is cheap and conservative: it flags rows that *may* hold a container among their
feature values or a string over the length limit; the fast path then checks only those rows
exactly (:func:`_strings_ok` for strings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _strings_ok(
    features: dict[str, Any], segment: Any, label: str | None, event_id: Any, limit: int
) -> bool:
    """Exact length check of every kept string of one event (for rows the byte scan flagged)."""
    if features and max(map(len, features)) > limit:
        return False
    if any(type(v) is str and len(v) > limit for v in features.values()):
        return False
    if type(segment) is dict and any(
        len(k) > limit or (type(v) is str and len(v) > limit) for k, v in segment.items()
    ):
        return False
    if label is not None and len(label) > limit:
        return False
    return not (type(event_id) is str and len(event_id) > limit)


def _rows_of(ends: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.searchsorted(ends, positions, side="right")


def _byte_scan(
    joined: bytes, lens: list[int], objects: int, per_row: Callable[[], np.ndarray], limit: int
) -> tuple[set[int], set[int]]:
    """Rows that may hold a nested container or an over-long string, from the raw bytes.

    Containers: every ``{`` or ``[`` byte is counted. An accepted row has exactly one ``{``
    per object it is known to contain (top level, features, segment, prediction object), so a
    row with more may hold a container among its feature values (or in an unknown field, or a
    brace inside a string). Strings: without backslashes every string is a run of non-quote
    bytes; a string of more than ``limit`` characters is a run of at least ``limit + 1`` bytes,
    which covers a whole aligned block of ``block <= (limit + 2) // 2`` bytes holding no quote.
    Rows with a backslash (escapes) are flagged for the exact check.
    """
    arr = np.frombuffer(joined, dtype=np.uint8)
    ends: np.ndarray | None = None
    containers: set[int] = set()
    strings: set[int] = set()

    if np.count_nonzero(arr == 0x7B) + np.count_nonzero(arr == 0x5B) != objects:
        opening = np.flatnonzero((arr | 0x20) == 0x7B)  # '{' (0x7B) or '[' (0x5B)
        ends = np.cumsum(np.array(lens, dtype=np.int64))
        counts = np.bincount(_rows_of(ends, opening), minlength=len(lens))
        containers.update(np.flatnonzero(counts != per_row()).tolist())

    if b"\\" in joined:
        ends = np.cumsum(np.array(lens, dtype=np.int64)) if ends is None else ends
        strings.update(_rows_of(ends, np.flatnonzero(arr == 0x5C)).tolist())

    block = (limit + 2) // 2
    if block >= 64:
        block -= block % 64
    whole = len(arr) // block
    if whole:
        quote = arr[: whole * block] == 0x22
        if block % 64 == 0:  # a flag per 8 bytes, then 8 flags per word: few, wide reductions
            words = (quote.view(np.uint64) != 0).view(np.uint64).reshape(whole, block // 64)
            has_quote = words[:, 0].copy()
            for column in range(1, block // 64):  # OR of a few columns beats an axis reduction
                has_quote |= words[:, column]
        else:
            has_quote = quote.reshape(whole, block).any(axis=1)
        empty_blocks = np.flatnonzero(has_quote == 0)
        if empty_blocks.size:
            ends = np.cumsum(np.array(lens, dtype=np.int64)) if ends is None else ends
            first = _rows_of(ends, empty_blocks * block)
            last = _rows_of(ends, empty_blocks * block + block - 1)
            for lo, hi in zip(first.tolist(), last.tolist(), strict=True):
                strings.update(range(lo, hi + 1))
    return containers, strings
