"""Kafka record batches built with aiokafka's own builders, for the intake's tests.

Plain, compressed, compacted (offset gaps), transactional and control v2 batches, old-format (v1)
message sets, and the two ways of draining them: aiokafka's ``PartitionRecords`` generator as
``FetchResult.getall`` does, and the intake's :func:`~driftwire.stages._fetch.take_records`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from aiokafka.codec import has_lz4, has_snappy, has_zstd
from aiokafka.consumer.fetcher import READ_COMMITTED, READ_UNCOMMITTED, PartitionRecords
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


def intake_calls(
    src: Any, budgets: list[int | None], crcs: Sequence[int] = ()
) -> list[tuple[Any, ...]]:
    """What :func:`take_records` takes, call by call (``crcs``: the checked batches)."""
    calls = []
    rest: _Rest | None = None
    for budget in budgets:
        records, exhausted, rest = take_records(src, budget, rest, crcs)
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


#: a fetch of up to five batches, read in calls of up to seven records (the last drains the
#: rest), from ``skip`` records into the first batch, read committed or not
fetch_cases = settings(max_examples=100, deadline=None)(
    given(
        batches=st.lists(batch_st, min_size=1, max_size=5),
        budgets=st.lists(st.none() | st.integers(1, 7), min_size=1, max_size=8),
        skip=st.integers(0, 4),
        committed=st.booleans(),
    )
)
