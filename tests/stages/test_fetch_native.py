"""The compiled CRC check of fetched batches (native/src/records.rs) and the intake with it.

``batch_crcs`` must find exactly the batches aiokafka's ``validate_crc`` finds correct (the
leading ones, up to the first that fails); :func:`take_records` given its answer must return
what aiokafka returns, and still refuse a corrupt batch it was not told about.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aiokafka.errors import CorruptRecordException
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka_batches import (
    aiokafka_calls,
    batch_st,
    build_fetch,
    fetch_cases,
    intake_calls,
    source,
    v1_set,
    v2_batch,
)

from driftwire.stages import _fetch
from driftwire.stages._fetch import take_records

assert _fetch.batch_crcs is not None  # conftest.py leaves this file out without it
batch_crcs = _fetch.batch_crcs


def _stored(raw: bytes) -> list[int]:
    records, crcs = MemoryRecords(raw), []
    while records.has_next():
        batch = records.next_batch()
        if not batch.validate_crc():
            break
        crcs.append(batch.crc)
    return crcs


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_crc32c_is_aiokafkas(data: bytes) -> None:
    extension: Any = __import__("_driftwire_native")
    assert extension.crc32c(data) == calc_crc32c(data)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(batch_st, min_size=1, max_size=5), cut=st.integers(0, 30))
def test_batch_crcs_finds_the_batches_aiokafka_finds_correct(batches: list[Any], cut: int) -> None:
    raw, _, _ = build_fetch(batches)
    assert batch_crcs(raw) == _stored(raw) and len(_stored(raw)) == len(batches)
    # a fetch ends inside its last batch: that one is not listed (aiokafka does not read it)
    assert batch_crcs(raw[: len(raw) - cut - 1]) == _stored(raw)[: len(batches) - 1] or cut
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0x01  # the last batch's last byte
    assert batch_crcs(bytes(corrupt)) == _stored(raw)[:-1]


def test_old_format_sets_are_left_to_aiokafka() -> None:
    assert batch_crcs(v1_set(0, [b"a", b"b"], 0)) == []
    assert batch_crcs(b"") == []


@fetch_cases
def test_take_records_with_checked_crcs_matches_aiokafka(
    batches: list[Any], budgets: list[int | None], skip: int, committed: bool
) -> None:
    raw, aborted, first = build_fetch(batches)
    budgets = [*budgets, None]
    expected = aiokafka_calls(
        source(raw, first + skip, aborted=aborted, committed=committed), budgets
    )
    src = source(raw, first + skip, aborted=aborted, committed=committed)
    assert intake_calls(src, budgets, crcs=batch_crcs(raw)) == expected


def test_a_corrupt_batch_listed_with_another_crc_is_still_refused() -> None:
    bad = bytearray(v2_batch(0, [(0, None, b"value", [])]))
    bad[bad.index(b"value")] = ord("V")
    # the CRC listed at its place is another batch's, not the one it stores: aiokafka checks it
    other = struct.unpack_from(">I", v2_batch(0, [(0, None, b"other", [])]), 17)[0]
    with pytest.raises(CorruptRecordException):
        take_records(source(bytes(bad), 0), None, None, [other])
