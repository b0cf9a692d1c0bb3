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
from aiokafka.codec import has_lz4, has_snappy, has_zstd
from aiokafka.consumer.fetcher import READ_COMMITTED, READ_UNCOMMITTED, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwire.stages._fetch import _Rest, take_records

TP = TopicPartition("events", 0)
CODECS = [0, 1] + [c for c, ok in ((2, has_snappy()), (3, has_lz4()), (4, has_zstd())) if ok]
ATTRIBUTES = 21  # where a v2 batch's attributes start (the CRC covers from here on)
CONTROL, LOG_APPEND_TIME = 0x20, 0x08


def _patch_attributes(batch: bytearray, bits: int) -> bytearray:
    (attrs,) = struct.unpack_from(">h", batch, ATTRIBUTES)
    struct.pack_into(">h", batch, ATTRIBUTES, attrs | bits)
    struct.pack_into(">I", batch, 17, calc_crc32c(bytes(batch[ATTRIBUTES:])))
    return batch


def v2_batch(
    base: int,
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    *,
    codec: int = 0,
    producer: int = -1,
    control: bool = False,
    log_append_time: bool = False,
) -> bytes:
    """One v2 batch at ``base``: ``records`` are (offset delta, key, value, headers)."""
    builder = DefaultRecordBatchBuilder(
        2, codec, int(producer >= 0), producer, 0 if producer >= 0 else -1, -1, 1 << 20
    )
    for delta, key, value, headers in records:
        builder.append(delta, timestamp=1_700_000_000_000 + delta, key=key, value=value,
                       headers=headers)  # fmt: skip
    batch = builder.build()
    struct.pack_into(">q", batch, 0, base)
    bits = (CONTROL if control else 0) | (LOG_APPEND_TIME if log_append_time else 0)
    return bytes(_patch_attributes(batch, bits) if bits else batch)


def control_batch(base: int, producer: int, *, abort: bool) -> bytes:
    key = struct.pack(">hh", 0, 0 if abort else 1)
    return v2_batch(base, [(0, key, struct.pack(">hi", 0, 0), [])], producer=producer,
                    control=True)  # fmt: skip


def v1_set(base: int, values: list[bytes], codec: int) -> bytes:
    builder = LegacyRecordBatchBuilder(1, codec, 1 << 20)
    for i, value in enumerate(values):
        builder.append(base + i, timestamp=1_700_000_000_000 + i, key=None, value=value)
    return bytes(builder.build())


def source(raw: bytes, fetch_offset: int, *, aborted: Any = None, committed: bool = False,
           crcs: bool = True) -> Any:  # fmt: skip
    level = READ_COMMITTED if committed else READ_UNCOMMITTED
    return PartitionRecords(TP, MemoryRecords(raw), aborted, fetch_offset, None, None, crcs, level)


def _row(r: Any) -> tuple[Any, ...]:
    return (r.offset, r.timestamp, r.key, r.value, tuple(r.headers))


def aiokafka_calls(src: Any, budgets: list[int | None]) -> list[tuple[Any, ...]]:
    """What ``FetchResult.getall`` takes from the generator, call by call."""
    calls = []
    exhausted = False
    for budget in budgets:
        got: list[Any] = []
        if exhausted:
            break
        for record in src:
            got.append(_row(record))
            if budget is not None and len(got) >= budget:
                break
        else:
            exhausted = True
        calls.append((got, exhausted, src.next_fetch_offset))
    return calls


def intake_calls(src: Any, budgets: list[int | None]) -> list[tuple[Any, ...]]:
    calls = []
    rest: _Rest | None = None
    for budget in budgets:
        records, exhausted, rest = take_records(src, budget, rest)
        calls.append(([_row(r) for r in records], exhausted, src.next_fetch_offset))
        if exhausted:
            break
    return calls


headers_st = st.lists(st.tuples(st.sampled_from(["a", "trace"]), st.none() | st.binary(max_size=4)),
                      max_size=2)  # fmt: skip
record_st = st.tuples(st.integers(1, 3), st.none() | st.binary(max_size=6),
                      st.none() | st.binary(max_size=20), headers_st)  # fmt: skip
batch_st = st.tuples(
    st.sampled_from(["plain", "txn", "commit", "abort"]),
    st.sampled_from(CODECS),
    st.lists(record_st, min_size=1, max_size=6),
    st.booleans(),  # log append time
    st.integers(0, 3),  # gap before the batch (compaction)
)


def build_fetch(batches: list[Any]) -> tuple[bytes, list[tuple[int, int]], int]:
    """The fetch's bytes, its aborted transactions (producer, first offset) and its first offset."""
    raw, aborted, offset = b"", [], 100
    open_txn: dict[int, int] = {}
    for kind, codec, records, log_append, gap in batches:
        offset += gap
        producer = 7 if kind in ("txn", "commit", "abort") else -1
        if kind in ("commit", "abort"):
            raw += control_batch(offset, producer, abort=kind == "abort")
            if kind == "abort" and producer in open_txn:
                aborted.append((producer, open_txn.pop(producer)))
            open_txn.pop(producer, None)
            offset += 1
            continue
        deltas, rows = 0, []
        for step, key, value, headers in records:
            rows.append((deltas, key, value, headers))
            deltas += step  # steps over 1 leave compaction gaps
        if producer >= 0:
            open_txn.setdefault(producer, offset)
        raw += v2_batch(offset, rows, codec=codec, producer=producer, log_append_time=log_append)
        offset += rows[-1][0] + 1
    return raw, aborted, 100


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(batch_st, min_size=1, max_size=5),
    budgets=st.lists(st.none() | st.integers(1, 7), min_size=1, max_size=8),
    skip=st.integers(0, 4),
    committed=st.booleans(),
)
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
