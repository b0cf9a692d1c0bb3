"""The intake's batch-wise drain returns what iterating aiokafka's ``PartitionRecords`` returns.

Both sides read the same bytes, built with aiokafka's own batch builders: plain, compressed
(every codec aiokafka has here), compacted (offset gaps), transactional and control batches,
old-format (v1) message sets (on their own: aiokafka reads a fetch's batches
in the format of its first), a fetch position inside the first batch, aborted transactions
under ``read_committed``, and ``max_records`` budgets that end anywhere, including exactly at the
end of a batch. Compared call by call: the records (offset, timestamp, key, value, headers),
whether the source is exhausted, and the position (``next_fetch_offset``) after each call.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aiokafka.errors import CorruptRecordException
from kafka_batches import (
    _patch_attributes,
    aiokafka_calls,
    build_fetch,
    control_batch,
    fetch_cases,
    intake_calls,
    source,
    v1_set,
    v2_batch,
)

from driftwire.stages._fetch import take_records


@fetch_cases
def test_take_records_matches_aiokafka(
    batches: list[Any], budgets: list[int | None], skip: int, committed: bool
) -> None:
    raw, aborted, first = build_fetch(batches)
    budgets = [*budgets, None]  # the last call drains the rest
    expected = aiokafka_calls(
        source(raw, first + skip, aborted=aborted, committed=committed), budgets
    )
    got = intake_calls(source(raw, first + skip, aborted=aborted, committed=committed), budgets)
    assert got == expected


def test_aborted_transaction_and_markers_are_skipped_under_read_committed() -> None:
    raw = (
        v2_batch(0, [(0, None, b"kept", [])])
        + v2_batch(1, [(0, None, b"aborted", []), (1, None, b"aborted", [])], producer=3)
        + control_batch(3, 3, abort=True)
        + v2_batch(4, [(0, None, b"committed", [])], producer=3)
        + control_batch(5, 3, abort=False)
    )
    records, exhausted, _ = take_records(
        source(raw, 0, aborted=[(3, 1)], committed=True), None, None
    )
    assert [(r.offset, r.value) for r in records] == [(0, b"kept"), (4, b"committed")]
    assert exhausted
    uncommitted, _, _ = take_records(source(raw, 0, aborted=[(3, 1)]), None, None)
    assert [r.offset for r in uncommitted] == [0, 1, 2, 4]


def test_budget_ending_a_batch_leaves_the_position_at_its_last_record() -> None:
    # the batch's last offset (5) was compacted away: its next offset is 6, its last record's 4
    batch = bytearray(v2_batch(0, [(0, None, b"a", []), (4, None, b"b", [])]))
    struct.pack_into(">i", batch, 23, 5)  # last offset delta
    raw = _patch_attributes(batch, 0)
    src = source(bytes(raw), 0)
    records, exhausted, rest = take_records(src, 2, None)
    assert ([r.offset for r in records], exhausted, src.next_fetch_offset) == ([0, 4], False, 5)
    records, exhausted, rest = take_records(src, 2, rest)
    assert (records, exhausted, rest, src.next_fetch_offset) == ([], True, None, 6)


def test_corrupt_batch_raises_once_then_the_fetch_ends() -> None:
    good = v2_batch(0, [(0, None, b"a", [])])
    bad = bytearray(v2_batch(1, [(0, None, b"value", [])]))
    bad[bad.index(b"value")] = ord("V")  # a bit flipped in the value
    src = source(bytes(bad) + good, 1)
    with pytest.raises(CorruptRecordException):
        take_records(src, None, None)
    # records taken before a corrupt batch are returned; the error comes with the next call
    src = source(good + bytes(bad), 0)
    records, exhausted, rest = take_records(src, None, None)
    assert ([r.value for r in records], exhausted, src.next_fetch_offset) == ([b"a"], False, 1)
    with pytest.raises(CorruptRecordException):
        take_records(src, None, rest)
    assert take_records(src, None, rest) == ([], True, None)
    # without the CRC check, the batch is read
    records, _, _ = take_records(source(good + bytes(bad), 0, crcs=False), None, None)
    assert [(r.offset, r.value) for r in records] == [(0, b"a"), (1, b"Value")]


@pytest.mark.parametrize("codec", [0, 1, 2])
def test_old_format_message_sets_match_aiokafka(codec: int) -> None:
    raw = b"".join(v1_set(10 + 3 * i, [b"x%d" % i] * 3, codec) for i in range(3))
    for skip, budgets in ((0, [None]), (4, [2, 2, None]), (1, [3, None])):
        expected = aiokafka_calls(source(raw, 10 + skip), budgets)
        assert intake_calls(source(raw, 10 + skip), budgets) == expected
        assert expected[0][0]  # records were read
