"""What stage 1 knows per model: feature kinds, tracked segments and features, caps, overflow.

Segment key: ``segment_key({"tier": "gold", "region": "eu"}) == "region=eu,tier=gold"``: sorted
keys, ``key=value`` joined by ``,``, with ``\\``, ``,`` and ``=`` inside keys and values escaped
by a backslash, so distinct segments never share a key (:func:`parse_segment_key` inverts
it). An event without segment has key ``""``: its model's unsegmented traffic.

Caps (:class:`ProfilerLimits`), so that no producer can exhaust memory; ``overflow_counts``
says what they folded or dropped:

* ``max_segments`` (200) segment keys per model; events of further segments go to the
  ``__other__`` segment (``(model, "segments")`` counts those events).
* ``max_features`` (500) feature names per model; values of further features are dropped
  (``(model, "features")`` counts the dropped non-null values).
* ``max_models`` (1,000) model names per catalog; events of further models are dropped
  (``("__other__", "models")`` counts them). :meth:`ModelCatalog.forget` retires a model.

Several profilers (one per input partition) of one process may share a :class:`ModelCatalog`,
so that they agree on kinds and on the tracked segments.

>>> catalog = ModelCatalog(ProfilerLimits(max_segments=1))
>>> catalog.admit_model("churn")
True
>>> catalog.segment("churn", "region=eu"), catalog.segment("churn", "region=us")
('region=eu', '__other__')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from driftwire.sketch.kinds import FeatureKind, FeatureKinds

__all__ = [
    "OTHER",
    "ModelCatalog",
    "ProfilerLimits",
    "parse_segment_key",
    "segment_key",
]

OTHER = "__other__"
_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\="})


def segment_key(segment: Mapping[str, Any]) -> str:
    """The canonical key of a segment dict (``{}`` → ``""``, all of a model's traffic)."""
    return ",".join(
        f"{str(k).translate(_ESCAPES)}={str(v).translate(_ESCAPES)}"
        for k, v in sorted(segment.items(), key=lambda item: str(item[0]))
    )


def parse_segment_key(key: str) -> dict[str, str]:
    """Invert :func:`segment_key`.

    >>> parse_segment_key(segment_key({"a,b": "x=y", "c": "\\\\"}))
    {'a,b': 'x=y', 'c': '\\\\'}
    """
    out: dict[str, str] = {}
    if not key:
        return out
    parts: list[str] = [""]
    chars = iter(key)
    for ch in chars:
        if ch == "\\":
            parts[-1] += next(chars, "")
        elif ch in ",=":
            parts.append(ch)
            parts.append("")
        else:
            parts[-1] += ch
    # parts alternate: text, separator, text, ...
    texts, seps = parts[::2], parts[1::2]
    if len(texts) % 2 or any(sep != ("=" if i % 2 == 0 else ",") for i, sep in enumerate(seps)):
        raise ValueError(f"not a segment key: {key!r}")
    for name, value in zip(texts[::2], texts[1::2], strict=True):
        out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class ProfilerLimits:
    """Cardinality caps per model (see the module docstring)."""

    max_segments: int = 200
    max_features: int = 500
    max_models: int = 1_000

    def __post_init__(self) -> None:
        for name in ("max_segments", "max_features", "max_models"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@dataclass(slots=True)
class _ModelState:
    segments: set[str] = field(default_factory=set)
    features: set[str] = field(default_factory=set)
    kinds: dict[str, FeatureKinds] = field(default_factory=dict)  # per model version


class ModelCatalog:
    """Per model: feature kinds (per version), tracked segments and features, overflow counts.

    ``declared`` maps a model name to its declared feature kinds (from config or a baseline).
    """

    def __init__(
        self,
        limits: ProfilerLimits | None = None,
        declared: Mapping[str, Mapping[str, FeatureKind | str]] | None = None,
    ) -> None:
        self.limits = limits if limits is not None else ProfilerLimits()
        self._declared = {model: dict(kinds) for model, kinds in (declared or {}).items()}
        self._models: dict[str, _ModelState] = {}
        self._overflow: Counter[tuple[str, str]] = Counter()

    @property
    def overflow_counts(self) -> Mapping[tuple[str, str], int]:
        """``(model, "segments" | "features" | "models")`` → events or values folded/dropped."""
        return MappingProxyType(self._overflow)

    def admit_model(self, model: str) -> bool:
        if model in self._models:
            return True
        if len(self._models) >= self.limits.max_models:
            return False
        self._models[model] = _ModelState()
        return True

    def forget(self, model: str) -> None:
        """Drop what is known about a retired model (its kinds, segments and features)."""
        self._models.pop(model, None)

    def kinds(self, model: str, version: str) -> FeatureKinds:
        state = self._models[model]
        kinds = state.kinds.get(version)
        if kinds is None:
            kinds = state.kinds[version] = FeatureKinds(self._declared.get(model))
        return kinds

    def segment(self, model: str, key: str) -> str:
        """``key`` if it is (or can become) one of the model's tracked segments, else OTHER."""
        tracked = self._models[model].segments
        if key in tracked:
            return key
        if len(tracked) < self.limits.max_segments:
            tracked.add(key)
            return key
        return OTHER

    def admit_feature(self, model: str, name: str) -> bool:
        tracked = self._models[model].features
        if name in tracked:
            return True
        if len(tracked) < self.limits.max_features:
            tracked.add(name)
            return True
        return False

    def count_overflow(self, model: str, what: str, n: int) -> None:
        if n:
            self._overflow[(model, what)] += n
