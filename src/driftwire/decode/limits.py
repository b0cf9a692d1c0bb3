"""The size limits the decoder applies to every event.

>>> DecoderLimits(max_features=50).max_features
50
>>> DecoderLimits(max_event_bytes=0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
driftwire.errors.ConfigError: config error at 'decoder.max_event_bytes': must be ... got 0
"""

from __future__ import annotations

from dataclasses import dataclass

from driftwire.errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "DecoderLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DecoderLimits:
    """Size limits applied to every event; the schema documents the defaults."""

    max_event_bytes: int = 65536
    max_features: int = 1000
    max_segment_keys: int = 16
    max_string_length: int = 256

    def __post_init__(self) -> None:
        for name in ("max_event_bytes", "max_features", "max_segment_keys", "max_string_length"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"decoder.{name}", f"must be an integer >= 1, got {value!r}")


DEFAULT_LIMITS = DecoderLimits()
