"""A dead letter keeps the original record's headers, null-valued ones included."""

from __future__ import annotations

from driftwire.decode.deadletter import ORIGINAL_BYTES, TRUNCATED, fit_dead_letter

ORIGINAL: list[tuple[str, bytes]] = [("trace", b"t1"), ("empty", None)]  # type: ignore[list-item]


def test_a_null_header_value_is_kept_and_counts_as_empty() -> None:
    value, headers = fit_dead_letter(b"k", b"not json", ORIGINAL, max_bytes=100)
    assert (value, headers) == (b"not json", ORIGINAL)


def test_a_value_too_large_is_cut_beside_a_null_header() -> None:
    # key 1 + headers (5 + 2) + (5 + 0) = 13 bytes besides the value
    value, headers = fit_dead_letter(b"k", b"x" * 100, ORIGINAL, max_bytes=60)
    marks = [(TRUNCATED, b"true"), (ORIGINAL_BYTES, b"100")]
    assert headers == [*ORIGINAL, *marks]
    assert value == b"x" * (60 - 13 - sum(len(k) + len(v) for k, v in marks))
