"""driftwire: streaming drift detection for machine-learning models in production.

Importing the package is cheap: the public names below are loaded on first use.

>>> import driftwire
>>> driftwire.decode_batch([b"{}"]).rejections[0].reason
'missing_field'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Alert": "driftwire.alerts.alert",
    "AlertPolicy": "driftwire.alerts.policy",
    "CategoricalSketch": "driftwire.sketch.categorical",
    "ConfigError": "driftwire.errors",
    "DecodedBatch": "driftwire.decode.batch",
    "Detector": "driftwire.detect.detector",
    "DriftResult": "driftwire.stats.drift",
    "DriftwireError": "driftwire.errors",
    "EventClock": "driftwire.profiling.clock",
    "FormatError": "driftwire.errors",
    "InMemoryPipeline": "driftwire.stages.inmemory",
    "InputError": "driftwire.errors",
    "NumericSketch": "driftwire.sketch.numeric",
    "Profile": "driftwire.sketch.profile",
    "Profiler": "driftwire.profiling.profiler",
    "Reference": "driftwire.detect.reference",
    "ReferenceStore": "driftwire.detect.reference",
    "Rejection": "driftwire.decode.batch",
    "Settings": "driftwire.ops.config",
    "Thresholds": "driftwire.alerts.policy",
    "TransportError": "driftwire.errors",
    "categorical_drift": "driftwire.stats.drift",
    "decode_batch": "driftwire.decode.decoder",
    "load_settings": "driftwire.ops.config",
    "numeric_drift": "driftwire.stats.drift",
}

__all__ = [
    "Alert",
    "AlertPolicy",
    "CategoricalSketch",
    "ConfigError",
    "DecodedBatch",
    "Detector",
    "DriftResult",
    "DriftwireError",
    "EventClock",
    "FormatError",
    "InMemoryPipeline",
    "InputError",
    "NumericSketch",
    "Profile",
    "Profiler",
    "Reference",
    "ReferenceStore",
    "Rejection",
    "Settings",
    "Thresholds",
    "TransportError",
    "__version__",
    "categorical_drift",
    "decode_batch",
    "load_settings",
    "numeric_drift",
]

if TYPE_CHECKING:
    from driftwire.alerts.alert import Alert
    from driftwire.alerts.policy import AlertPolicy, Thresholds
    from driftwire.decode.batch import DecodedBatch, Rejection
    from driftwire.decode.decoder import decode_batch
    from driftwire.detect.detector import Detector
    from driftwire.detect.reference import Reference, ReferenceStore
    from driftwire.errors import (
        ConfigError,
        DriftwireError,
        FormatError,
        InputError,
        TransportError,
    )
    from driftwire.ops.config import Settings, load_settings
    from driftwire.profiling.clock import EventClock
    from driftwire.profiling.profiler import Profiler
    from driftwire.sketch.categorical import CategoricalSketch
    from driftwire.sketch.numeric import NumericSketch
    from driftwire.sketch.profile import Profile
    from driftwire.stages.inmemory import InMemoryPipeline
    from driftwire.stats.drift import DriftResult, categorical_drift, numeric_drift


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'driftwire' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
