"""The library for model servers: log one inference event per prediction to Kafka.

``from driftwire.producer import InferenceLogger`` loads the logger on first use; this package
imports only :mod:`driftwire.errors` from driftwire (and orjson, aiokafka).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AsyncInferenceLogger",
    "InferenceLogger",
    "InvalidEventError",
    "KafkaSecurity",
    "ModelOptions",
    "ProducerStats",
    "Timed",
]

if TYPE_CHECKING:
    from driftwire.producer.logger import (
        AsyncInferenceLogger,
        InferenceLogger,
        InvalidEventError,
        KafkaSecurity,
        ModelOptions,
        ProducerStats,
        Timed,
    )


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'driftwire.producer' has no attribute {name!r}")
    value = getattr(importlib.import_module("driftwire.producer.logger"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
