"""Timestamps of inference events: RFC 3339 date-times to epoch milliseconds.

The rules are the decoder's (:mod:`driftwire.decode.decoder`, "Rules"):
``YYYY-MM-DDTHH:MM:SS[.frac]``
then ``Z`` or ``±HH:MM``, fractions truncated to milliseconds, years 0001-9999. :func:`_iso_ms`
parses one string; :func:`_iso_many` a whole column at once (vectorized with numpy), giving
exactly the same answers.

>>> _iso_ms("2026-11-22T15:04:05.123Z"), _iso_ms("2026-11-22T16:04:05.123+01:00")
(1795359845123, 1795359845123)
>>> _iso_ms("2026-11-22T15:04:05.123") is None  # no offset: ambiguous
True
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from typing import Any

import numpy as np

MAX_EPOCH_MS = 2**53
"""Exclusive upper bound of a numeric timestamp (epoch milliseconds), about the year 287,000."""


_ISO_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)


def _iso_ms(text: str) -> int | None:
    """Epoch milliseconds of an RFC 3339 date-time with offset, or None if it is not one."""
    match = _ISO_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:  # month 13, February 30, hour 24, second 60, year 0 ...
        return None
    ms = (moment - _EPOCH) // _ONE_MS + (int((fraction + "00")[:3]) if fraction else 0)
    if sign:
        hours, minutes = int(off_h), int(off_m)
        if hours > 23 or minutes > 59:
            return None
        offset = (hours * 60 + minutes) * 60_000
        ms += -offset if sign == "+" else offset  # UTC = local time - offset
    return ms


# Vectorized form of _iso_ms for a whole column. The strings are joined with NUL (which no
# valid timestamp holds) into one ASCII buffer; NUL positions give every row's start and end.
# An overlapping view of that buffer reads 8 bytes at any offset, so a few gathers fetch
# each row's first 24 characters (date, time, the dot and three fraction digits), its last 8
# (Z or the offset) and further fraction digits. Two-digit fields go through a 65536-entry
# table (anything but two ASCII digits reads as 10000, which every range check refuses) and
# dates through a table of month starts.
_VECTOR_MIN_ROWS = 16  # fewer strings are parsed one by one
_NOT_DIGITS = 10_000
_U1, _U2, _U8 = np.dtype(np.uint8), np.dtype("<u2"), np.dtype("<u8")
# bytes 4..11 of "YYYY-MM-DDTHH:MM:SS": '-' at 0, '-' at 3, 'T' or 't' at 6 (OR 0x20 -> 't')
_SEP_LOW = (0xFF << 0 | 0xFF << 24 | 0xFF << 48, 0x20 << 48, 0x2D | 0x2D << 24 | 0x74 << 48)
# bytes 12..19: ':' at 1, ':' at 4
_SEP_HIGH = (0xFF << 8 | 0xFF << 32, 0, 0x3A << 8 | 0x3A << 32)
_NIBBLES_HIGH, _THREES, _SIXES = 0xF0F0F0F0F0F0F0F0, 0x3030303030303030, 0x0606060606060606


@functools.cache
def _digit_tables() -> tuple[np.ndarray, np.ndarray]:
    one = np.full(256, _NOT_DIGITS, dtype=np.int64)
    one[48:58] = np.arange(10)
    two = np.full(1 << 16, _NOT_DIGITS, dtype=np.int64)
    codes = np.arange(1 << 16)
    low, high = one[codes & 0xFF], one[codes >> 8]  # little-endian: first character is low
    valid = (low < 10) & (high < 10)
    two[valid] = low[valid] * 10 + high[valid]
    return one, two


@functools.cache
def _calendar() -> tuple[np.ndarray, np.ndarray]:
    """Days from the epoch to the first of each month of years 0-9999, and month lengths.

    Indexed by ``year * 12 + month - 1``; year 0 has months of length 0 (it is not valid).
    """
    year = np.repeat(np.arange(10_000, dtype=np.int64), 12)
    month = np.tile(np.arange(1, 13, dtype=np.int64), 10_000)
    shifted = year - (month <= 2)  # days from civil (H. Hinnant), proleptic Gregorian
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    starts = era * 146_097 + day_of_era - 719_468
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    lengths = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[month - 1]
    lengths = lengths + (leap & (month == 2))
    lengths[:12] = 0
    return starts, lengths


def _iso_vector(values: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Epoch ms and validity of many strings; None if one holds a NUL (then go one by one)."""
    rows = len(values)
    raw = ("\x00".join(values) + "\x00" * 33).encode("ascii", "replace")  # "?" is never valid
    text = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(text[:-32] == 0)
    if len(ends) != rows:
        return None
    starts = np.empty(rows, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    one, two = _digit_tables()
    month_starts, month_lengths = _calendar()
    words = np.ndarray((len(raw) - 7,), dtype=_U8, buffer=raw, strides=(1,))  # bytes i..i+7

    head = np.empty((rows, 3), dtype=_U8)  # characters 0..23 of every row
    for k in range(3):
        head[:, k] = words[starts + 8 * k]  # (fancy indexing beats take on this view)
    tail = words[ends - 8]  # the last 8 characters of every row (garbage if shorter)

    def byte(
        buffer: np.ndarray, offset: int, dtype: np.dtype[Any] = _U1, width: int = 0
    ) -> np.ndarray:
        stride = buffer.itemsize * buffer.shape[-1] if buffer.ndim > 1 else buffer.itemsize
        shape, strides = ((rows, width), (stride, 3)) if width else ((rows,), (stride,))
        return np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset, strides=strides)

    def has(offset: int, mask: tuple[int, int, int]) -> np.ndarray:
        found: np.ndarray = (byte(head, offset, _U8) | mask[1]) & mask[0] == mask[2]
        return found

    # "YYYY-MM-DDTHH:MM:SS"
    century = two.take(byte(head, 0, _U2))
    year_rest, month, day, hour, minute, second = two.take(byte(head, 2, _U2, width=6)).T
    year = century * 100 + year_rest  # >= 10000 if any digit is not one
    month_index = year * 12 + month - 1
    ok = has(4, _SEP_LOW) & has(12, _SEP_HIGH) & (year >= 1) & (year <= 9999)
    ok &= (month >= 1) & (month <= 12) & (day >= 1)
    ok &= day <= month_lengths.take(month_index, mode="clip")
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    ms = (month_starts.take(month_index, mode="clip") + day - 1) * 86_400_000
    ms += hour * 3_600_000 + minute * 60_000 + second * 1000

    # then [".digits"], then "Z" or "+HH:MM"
    zulu = (byte(tail, 7) | 0x20) == 0x7A
    width = np.where(zulu, ends - 1, ends - 6) - (starts + 19)  # of ".digits"; 1 is invalid
    ok &= (ends - starts >= 20) & (width >= 0) & (width != 1)
    with_fraction = width >= 2
    # milliseconds from the first three digits (fewer: padded with zeros); >= 10000 if one
    # of them is not a digit
    pair, third = two.take(byte(head, 20, _U2)), one.take(byte(head, 22))
    first = np.where(width >= 4, pair * 10 + third, pair * 10)
    first = np.where(width == 2, one.take(byte(head, 20)) * 100, first)
    fraction_ok = (byte(head, 19) == 0x2E) & (first <= 999)
    extra = np.clip(width - 4, 0, 8)  # digits after the third (up to 8, in one word)
    if extra.any():
        # a byte is a digit if its high nibble is 3 and adding 6 keeps it 3
        later = words[starts + 23]
        shift = (np.minimum(extra, 7) * 8).astype(np.uint64)
        mask = np.where(extra == 8, ~np.uint64(0), (np.uint64(1) << shift) - np.uint64(1))
        high, threes = np.uint64(_NIBBLES_HIGH) & mask, np.uint64(_THREES) & mask
        fraction_ok &= (later & high) == threes
        fraction_ok &= ((later + np.uint64(_SIXES)) & high) == threes
    ok &= ~with_fraction | fraction_ok
    ms += np.where(with_fraction, first, 0)
    if not zulu.all():
        sign = byte(tail, 2)
        off_h, off_m = two.take(byte(tail, 3, _U2)), two.take(byte(tail, 6, _U2))
        valid = ((sign == 0x2B) | (sign == 0x2D)) & (byte(tail, 5) == 0x3A)
        ok &= zulu | (valid & (off_h <= 23) & (off_m <= 59))
        shift = (off_h * 60 + off_m) * 60_000
        ms -= np.where(zulu, 0, np.where(sign == 0x2B, shift, -shift))  # UTC = local - offset
    if (width > 12).any():  # rare: more than 11 fraction digits; read those one by one
        for row in np.flatnonzero(width > 12).tolist():
            exact = _iso_ms(values[row])
            ok[row], ms[row] = exact is not None, exact or 0
    return np.where(ok, ms, 0), ok


def _iso_many(values: list[str]) -> tuple[np.ndarray, list[int]]:
    """Epoch ms of many date-time strings, and the positions of the invalid ones."""
    parsed = _iso_vector(values) if len(values) >= _VECTOR_MIN_ROWS else None
    if parsed is not None:
        return parsed[0], np.flatnonzero(~parsed[1]).tolist()
    out = np.zeros(len(values), dtype=np.int64)
    bad = []
    for row, value in enumerate(values):
        ms = _iso_ms(value)
        if ms is None:
            bad.append(row)
        else:
            out[row] = ms
    return out, bad
