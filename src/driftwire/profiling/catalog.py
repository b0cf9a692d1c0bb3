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
* ``max_versions`` (20) versions per model; events of further versions go to the
  ``__other__`` version (``(model, "versions")`` counts those events).
* ``max_models`` (1,000) model names per catalog; events of further models are dropped
  (``("__other__", "models")`` counts them). :meth:`ModelCatalog.forget` retires a model.

Every cap is least recently seen first, not first come: a name that finds its cap full takes
the place of the name seen longest ago (``evictions`` counts those), unless that one was
seen in the current bucket too (:meth:`ModelCatalog.observe` tells the catalog the bucket
being folded), so names that stopped arriving make room for today's, and a flood of new
names cannot push out the ones still sending. A name folded or dropped in one bucket is
admitted again once older names can make room.

Several profilers (one per input partition) of one process may share a :class:`ModelCatalog`,
so that they agree on kinds and on the tracked segments.

>>> catalog = ModelCatalog(ProfilerLimits(max_segments=1))
>>> catalog.admit_model("churn")
True
>>> catalog.segment("churn", "region=eu"), catalog.segment("churn", "region=us")
('region=eu', '__other__')
>>> catalog.observe(60_000)   # the next bucket: region=eu was not seen in it yet
>>> catalog.segment("churn", "region=us"), dict(catalog.evictions)
('region=us', {'segments': 1})
"""

from __future__ import annotations

from collections import Counter, OrderedDict
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
    max_versions: int = 20

    def __post_init__(self) -> None:
        for name in ("max_segments", "max_features", "max_models", "max_versions"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class Recency:
    """At most ``limit`` names, the least recently seen making room for a new one.

    A name last seen at ``now`` (the bucket being folded) is never pushed out: a new name that
    finds only such names is refused.

    >>> r = Recency(2)
    >>> [r.admit(name, now=0) for name in ("a", "b", "c")]
    [(True, None), (True, None), (False, None)]
    >>> r.admit("c", now=1), r.admit("a", now=1), r.admit("d", now=1)
    ((True, 'a'), (True, 'b'), (False, None))
    """

    __slots__ = ("_seen", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, int] = OrderedDict()  # name -> last seen, oldest first

    def __contains__(self, name: object) -> bool:
        return name in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, name: str, *, now: int) -> tuple[bool, str | None]:
        """Whether ``name`` is (now) tracked, and the name it pushed out, if any."""
        seen = self._seen
        if name in seen:
            seen[name] = now
            seen.move_to_end(name)
            return True, None
        evicted = None
        if len(seen) >= self.limit:
            oldest, last = next(iter(seen.items()))
            if last >= now:
                return False, None
            del seen[oldest]
            evicted = oldest
        seen[name] = now
        return True, evicted

    def discard(self, name: str) -> None:
        self._seen.pop(name, None)


@dataclass(slots=True)
class _ModelState:
    segments: Recency
    features: Recency
    versions: Recency
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
        self._names = Recency(self.limits.max_models)
        self._models: dict[str, _ModelState] = {}
        self._overflow: Counter[tuple[str, str]] = Counter()  # of tracked models only
        self._totals: Counter[str] = Counter()
        self._evictions: Counter[str] = Counter()
        self._now = -(2**62)

    @property
    def overflow_counts(self) -> Mapping[tuple[str, str], int]:
        """``(model, "segments" | "features" | "versions" | "models")`` → events or values
        folded/dropped."""
        return MappingProxyType(self._overflow)

    @property
    def overflow_totals(self) -> Mapping[str, int]:
        """Events or values folded/dropped by what was capped, evicted models included."""
        return MappingProxyType(self._totals)

    @property
    def evictions(self) -> Mapping[str, int]:
        """Names pushed out to make room for newer ones, by what was capped."""
        return MappingProxyType(self._evictions)

    @property
    def tracked_models(self) -> int:
        """How many models the catalog tracks now."""
        return len(self._models)

    def observe(self, bucket_ms: int) -> None:
        """The bucket being folded: names seen in it are not pushed out until a later one."""
        if bucket_ms > self._now:
            self._now = bucket_ms

    def admit_model(self, model: str) -> bool:
        known = model in self._models
        admitted, evicted = self._names.admit(model, now=self._now)
        if evicted is not None:
            self._drop(evicted)
            self._evictions["models"] += 1
        if admitted and not known:
            limits = self.limits
            self._models[model] = _ModelState(
                Recency(limits.max_segments),
                Recency(limits.max_features),
                Recency(limits.max_versions),
            )
        return admitted

    def forget(self, model: str) -> None:
        """Drop what is known about a retired model (its kinds, segments and features)."""
        self._drop(model)
        self._names.discard(model)

    def _drop(self, model: str) -> None:
        self._models.pop(model, None)
        for what in ("segments", "features", "versions"):
            self._overflow.pop((model, what), None)

    def version(self, model: str, version: str) -> str:
        """``version`` if it is (or can become) one of the model's tracked versions, else OTHER."""
        state = self._models[model]
        admitted, evicted = state.versions.admit(version, now=self._now)
        if evicted is not None:
            state.kinds.pop(evicted, None)
            self._evictions["versions"] += 1
        return version if admitted else OTHER

    def kinds(self, model: str, version: str) -> FeatureKinds:
        state = self._models[model]
        kinds = state.kinds.get(version)
        if kinds is None:
            kinds = state.kinds[version] = FeatureKinds(self._declared.get(model))
        return kinds

    def segment(self, model: str, key: str) -> str:
        """``key`` if it is (or can become) one of the model's tracked segments, else OTHER."""
        admitted, evicted = self._models[model].segments.admit(key, now=self._now)
        if evicted is not None:
            self._evictions["segments"] += 1
        return key if admitted else OTHER

    def admit_feature(self, model: str, name: str) -> bool:
        admitted, evicted = self._models[model].features.admit(name, now=self._now)
        if evicted is not None:
            self._evictions["features"] += 1
        return admitted

    def count_overflow(self, model: str, what: str, n: int) -> None:
        if n:
            self._overflow[(model, what)] += n
            self._totals[what] += n
