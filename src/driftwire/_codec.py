"""Compact binary building blocks for serialized state: varints, blobs and a sealed envelope.

Every stored sketch or profile is ``magic (4 bytes) | format version (1 byte) | payload |
CRC-32 of everything before it (4 bytes, little endian)``. The checksum turns corruption and
truncation into a :class:`~driftwire.errors.FormatError` before any third-party decoder sees
the bytes; :class:`Reader` raises the same error for anything it cannot read.

>>> w = Writer()
>>> w.uvarint(300); w.text("é"); w.f64(0.5)
>>> r = Reader(unseal(seal(b"TEST", 1, w.getvalue()), b"TEST", 1, "test"))
>>> r.uvarint(), r.text(), r.f64()
(300, 'é', 0.5)
>>> r.done()
"""

from __future__ import annotations

import struct
import zlib
from typing import Protocol, TypeVar

import numpy as np

from driftwire.errors import FormatError

_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_MAX_VARINT_BYTES = 10


class Writer:
    """Appends fields to a growing byte string."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, value: int) -> None:
        self._buf.append(value)

    def uvarint(self, value: int) -> None:
        if 0 <= value < 0x80:  # one byte, the common case
            self._buf.append(value)
            return
        if value < 0:
            raise ValueError(f"uvarint needs a non-negative int, got {value}")
        buf = self._buf
        while value >= 0x80:
            buf.append((value & 0x7F) | 0x80)
            value >>= 7
        buf.append(value)

    def text_counts(self, counts: dict[str, int]) -> None:
        """Each key of ``counts`` in sorted order as :meth:`text`, then its count as
        :meth:`uvarint` (a categorical sketch's counters)."""
        buf = self._buf
        for key in sorted(counts):
            raw = key.encode("utf-8", "surrogatepass")
            n = counts[key]
            if len(raw) < 0x80 and 0 <= n < 0x80:
                buf.append(len(raw))
                buf += raw
                buf.append(n)
            else:
                self.blob(raw)
                self.uvarint(n)

    def svarint(self, value: int) -> None:
        """A signed int, zigzag encoded (small magnitudes take few bytes)."""
        self.uvarint(value * 2 if value >= 0 else -value * 2 - 1)

    def f64(self, value: float) -> None:
        self._buf += _F64.pack(value)

    def f64s(self, *values: float) -> None:
        """:meth:`f64` of each value, packed in one step."""
        self._buf += struct.pack(f"<{len(values)}d", *values)

    def blob(self, data: bytes) -> None:
        self.uvarint(len(data))
        self._buf += data

    def text(self, value: str) -> None:
        self.blob(value.encode("utf-8", "surrogatepass"))

    def getvalue(self) -> bytes:
        return bytes(self._buf)


class Reader:
    """Reads the fields a :class:`Writer` wrote; any shortfall raises :class:`FormatError`."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes | memoryview, what: str = "serialized state") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> memoryview:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise FormatError(f"{self._what}: truncated (needs {n} more bytes at {self._pos})")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def uvarint(self) -> int:
        pos = self._pos
        if pos < len(self._data):  # one byte, the common case
            byte = self._data[pos]
            if byte < 0x80:
                self._pos = pos + 1
                return byte
        data, end = self._data, len(self._data)
        value = shift = 0
        for _ in range(_MAX_VARINT_BYTES):
            if pos >= end:
                raise FormatError(f"{self._what}: truncated (needs 1 more bytes at {pos})")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self._pos = pos
                return value
            shift += 7
        self._pos = pos
        raise FormatError(f"{self._what}: varint longer than {_MAX_VARINT_BYTES} bytes")

    def svarint(self) -> int:
        raw = self.uvarint()
        return (raw >> 1) ^ -(raw & 1)

    def f64(self) -> float:
        return float(_F64.unpack(self._take(8))[0])

    def blob(self) -> bytes:
        return bytes(self._take(self.uvarint()))

    def text(self) -> str:
        raw = self.blob()
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{self._what}: invalid UTF-8 text") from exc

    def done(self) -> None:
        if self._pos != len(self._data):
            raise FormatError(f"{self._what}: {len(self._data) - self._pos} trailing bytes")


def seal(magic: bytes, version: int, payload: bytes) -> bytes:
    """Wrap ``payload`` in the envelope: magic, version, payload, CRC-32."""
    head = magic + bytes((version,)) + payload
    return head + _U32.pack(zlib.crc32(head))


def unseal(data: object, magic: bytes, version: int, what: str) -> bytes:
    """The payload of an envelope made by :func:`seal`, or :class:`FormatError` saying why not."""
    return unseal_any(data, magic, (version,), what)[1]


def unseal_any(
    data: object, magic: bytes, versions: tuple[int, ...], what: str
) -> tuple[int, bytes]:
    """:func:`unseal` for a reader of several format ``versions``: (the version, the payload)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(f"{what}: expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    overhead = len(magic) + 1 + _U32.size
    if len(raw) < overhead:
        raise FormatError(f"{what}: {len(raw)} bytes is too short for the envelope")
    if raw[: len(magic)] != magic:
        raise FormatError(f"{what}: bad magic {raw[: len(magic)]!r} (expected {magic!r})")
    found = raw[len(magic)]
    if found not in versions:
        reads = ", ".join(map(str, versions))
        raise FormatError(f"{what}: unsupported format version {found} (reads {reads})")
    (crc,) = _U32.unpack(raw[-_U32.size :])
    if zlib.crc32(raw[: -_U32.size]) != crc:
        raise FormatError(f"{what}: checksum mismatch (corrupted or truncated)")
    return found, raw[len(magic) + 1 : -_U32.size]


# -- checks shared by the sketches -----------------------------------------------------------


def check_int(name: str, value: object, lo: int, hi: int) -> None:
    """Raise ValueError unless ``value`` is an int (not a bool) in ``[lo, hi]``."""
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")


def non_negative(n: object) -> int:
    """``n`` as an int, or ValueError unless it is an integer >= 0."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"expected an int >= 0, got {n!r}")
    return int(n)


SketchT_co = TypeVar("SketchT_co", covariant=True)


class Deserializable(Protocol[SketchT_co]):
    """A datasketches class: ``deserialize(bytes)`` makes a sketch."""

    def deserialize(self, data: bytes, /) -> SketchT_co: ...


def deserialize_sketch(kind: Deserializable[SketchT_co], blob: bytes, what: str) -> SketchT_co:
    """``kind.deserialize(blob)`` for a datasketches class; any failure is FormatError."""
    try:
        return kind.deserialize(blob)
    except Exception as exc:  # datasketches raises IndexError, ValueError, RuntimeError, ...
        raise FormatError(f"{what}: {exc}") from exc
