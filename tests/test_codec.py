"""The varints of the serialized state: one-byte values take the short path, every other
length and every truncation reads and fails as before."""

from __future__ import annotations

import pytest

from driftwire._codec import Reader, Writer
from driftwire.errors import FormatError

VALUES = [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 2**32, 2**63]


def test_varints_of_every_length_round_trip_with_the_expected_bytes() -> None:
    w = Writer()
    for v in VALUES:
        w.uvarint(v)
        w.svarint(-v)
    data = w.getvalue()
    assert data[:4] == b"\x00\x00\x01\x01"  # 0, -0, 1, -1 (zigzag 1): one byte each
    for v, encoded in ((0x7F, b"\x7f"), (0x80, b"\x80\x01"), (0x4000, b"\x80\x80\x01")):
        one = Writer()
        one.uvarint(v)
        assert one.getvalue() == encoded
    r = Reader(data)
    for v in VALUES:
        assert r.uvarint() == v
        assert r.svarint() == -v
    r.done()


def test_negative_and_truncated_varints_fail_with_one_clear_error() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Writer().uvarint(-1)
    for data in (b"", b"\x80", b"\xff\xff"):
        with pytest.raises(FormatError, match="truncated"):
            Reader(data, "state").uvarint()
    with pytest.raises(FormatError, match="longer than 10 bytes"):
        Reader(b"\xff" * 11).uvarint()
    r = Reader(b"\x05\x81\x01")  # the short path, then the long one, from the same reader
    assert (r.uvarint(), r.uvarint()) == (5, 129)
    with pytest.raises(FormatError, match="truncated"):
        r.uvarint()


def test_text_counts_writes_each_sorted_key_as_text_then_its_count() -> None:
    """A categorical sketch's counters in one call: the bytes of text + uvarint per key, long
    keys (a two-byte length), large counts and non-ASCII keys included."""
    counts = {"b": 3, "a": 200, "é" * 70: 1, "x" * 130: 5, "": 1, "DE": 127, "FR": 128}
    fast, slow = Writer(), Writer()
    fast.text_counts(counts)
    for key in sorted(counts):
        slow.text(key)
        slow.uvarint(counts[key])
    assert fast.getvalue() == slow.getvalue()
    r = Reader(fast.getvalue())
    assert {r.text(): r.uvarint() for _ in counts} == counts
    r.done()


def test_f64s_packs_as_one_f64_after_another() -> None:
    values = (0.5, -1e300, float("inf"), -0.0, 1 / 3)
    packed, one_by_one = Writer(), Writer()
    packed.f64s(*values)
    for value in values:
        one_by_one.f64(value)
    assert packed.getvalue() == one_by_one.getvalue()
    r = Reader(packed.getvalue())
    assert [r.f64() for _ in values] == list(values)
    r.done()
