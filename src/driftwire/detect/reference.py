"""References: what a window is compared with.

A :class:`Reference` is a set of profiles, one per segment plus ``all``, with where it came
from: a *baseline* built offline from training data (``driftwire baseline build``, shipped as
a file and on the compacted baselines topic keyed by ``model/version``), or the *frozen
first window* of a new model version when no baseline exists. A segment the reference does
not know is compared with the reference's ``all`` profile, and the alert evidence says so.

>>> store = ReferenceStore()
>>> store.get("churn", "1") is None
True
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from driftwire.alerts.alert import iso
from driftwire.detect.window import ALL_SEGMENTS, segmented
from driftwire.errors import FormatError
from driftwire.sketch.profile import Profile

__all__ = ["ALL", "Reference", "ReferenceStore", "SmallReference", "segmented"]

FORMAT = 1
ALL = ALL_SEGMENTS


@dataclass
class Reference:
    """Profiles per segment (``all`` = every segment together) and their provenance."""

    kind: str  # baseline | frozen_window | trailing_window | seasonal (driftwire.detect.trailing)
    id: str
    model: str
    model_version: str
    profiles: dict[str, Profile]
    note: str = ""
    created_ms: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    #: The realized performance of the model on the reference data, when the baseline was
    #: built with the truth beside the predictions (``--target-column``): an opaque blob of
    #: :class:`driftwire.truth.reference.ReferencePerformance`, read by the truth stage only.
    #: Absent from older baselines, which load with None.
    performance: bytes | None = None
    #: What is derived from the profiles alone (edges, grids, shares), per segment and
    #: feature, computed on first use and kept for as long as this reference is used; never
    #: stored (it is rebuilt from the profiles after a restart).
    derived: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def cache(self, segment: str) -> dict[str, dict[str, Any]]:
        """The derived quantities of ``segment``'s profile (per feature)."""
        return self.derived.setdefault(segment, {})

    @property
    def count(self) -> int:
        p = self.profiles.get(ALL)
        return 0 if p is None else p.n_events

    def profile(self, segment: str) -> Profile:
        """The profile of ``segment``, falling back to all traffic."""
        return self.profiles.get(segment) or self.profiles[ALL]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "id": self.id, "count": self.count}
        if self.note:
            out["note"] = self.note
        if "span" in self.meta:  # trailing and seasonal references: the traffic they merge
            out["span"] = self.meta["span"]
        return out

    @classmethod
    def frozen(cls, model: str, version: str, window: dict[str, Profile], end_ms: int) -> Reference:
        """Freeze a version's first complete window as its reference."""
        ident = f"frozen:{model}/{version}@{iso(end_ms)}"
        return cls(
            kind="frozen_window",
            id=ident,
            model=model,
            model_version=version,
            profiles={s: p.copy() for s, p in window.items()},
            note=(
                "No baseline was published for this version, so its first complete window "
                f"(ending {iso(end_ms)}) is the reference."
            ),
            created_ms=end_ms,
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_state())

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "id": self.id,
            "model": self.model,
            "model_version": self.model_version,
            "note": self.note,
            "created_ms": self.created_ms,
            "meta": self.meta,
            "profiles": {
                s: base64.b64encode(p.to_bytes()).decode() for s, p in self.profiles.items()
            },
        }
        if self.performance is not None:
            state["performance"] = base64.b64encode(self.performance).decode()
        return state

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> Reference:
        try:
            if doc["format"] != FORMAT:
                raise FormatError(f"unsupported reference format {doc['format']!r}")
            profiles = {
                s: Profile.from_bytes(base64.b64decode(b)) for s, b in doc["profiles"].items()
            }
            if ALL not in profiles:
                raise FormatError("a reference needs an 'all' profile")
            return cls(
                kind=doc["kind"],
                id=doc["id"],
                model=doc["model"],
                model_version=doc["model_version"],
                profiles=profiles,
                note=doc.get("note", ""),
                created_ms=int(doc.get("created_ms", 0)),
                meta=dict(doc.get("meta", {})),
                performance=base64.b64decode(doc["performance"]) if "performance" in doc else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"malformed reference: {exc!r}") from exc

    @classmethod
    def from_bytes(cls, raw: bytes) -> Reference:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise FormatError(f"a reference must be JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise FormatError("a reference must be a JSON object")
        return cls.from_state(doc)


@dataclass(frozen=True)
class SmallReference:
    """A reference with (segment) profiles smaller than ``detect.min_reference_count``: the
    checks of those segments report insufficient data until it is rebuilt larger."""

    model: str
    model_version: str
    reference_kind: str
    reference_id: str
    segments: dict[str, int]  # segment -> events of its reference profile, the small ones
    min_reference_count: int

    @property
    def message(self) -> str:
        listed = ", ".join(f"{s} {n}" for s, n in sorted(self.segments.items())[:10])
        more = len(self.segments) - 10
        if more > 0:
            listed += f" and {more} more"
        fix = (
            "rebuild the baseline from more rows"
            if self.reference_kind == "baseline"
            else "publish a baseline (driftwire baseline build --publish)"
        )
        return (
            f"the {self.reference_kind.replace('_', ' ')} reference of {self.model} "
            f"{self.model_version} has fewer than {self.min_reference_count} events "
            f"(detect.min_reference_count) in {len(self.segments)} profile(s): {listed}; "
            f"their drift and data-quality checks report insufficient data. Fix: {fix} "
            f"(at least {self.min_reference_count} events per segment), or lower "
            "detect.min_reference_count"
        )

    def fields(self) -> dict[str, Any]:
        """For a structured (JSON) log line."""
        return {
            "model": self.model,
            "model_version": self.model_version,
            "reference_kind": self.reference_kind,
            "reference_id": self.reference_id,
            "segments": dict(sorted(self.segments.items())[:20]),
            "min_reference_count": self.min_reference_count,
        }


def small_profiles(
    reference: Reference, min_count: int, segments: Iterable[str] | None = None
) -> dict[str, int]:
    """Events of the profiles of ``reference`` below ``min_count`` (of ``segments``, each
    falling back to ``all`` as in comparisons; default: every profile it has).

    >>> from driftwire.sketch.profile import Profile
    >>> small, big = Profile(), Profile()
    >>> small.update([{"a": 1.0}] * 300); big.update([{"a": 1.0}] * 1500)
    >>> ref = Reference("baseline", "b", "m", "1", {"all": big, "region=eu": small})
    >>> small_profiles(ref, 1000), small_profiles(ref, 1000, ["region=us"])
    ({'region=eu': 300}, {})
    """
    names = list(reference.profiles) if segments is None else list(segments)
    sizes = {s: reference.profile(s).n_events for s in names}
    return {s: n for s, n in sizes.items() if n < min_count}


def baseline_id(
    model: str, version: str, profiles: dict[str, Profile], performance: bytes | None = None
) -> str:
    """A content hash, so the same training data gives the same id (and the same data with
    another target, another one)."""
    h = hashlib.sha256(f"{model}\x00{version}".encode())
    for segment in sorted(profiles):
        h.update(segment.encode())
        h.update(profiles[segment].to_bytes())
    if performance is not None:
        h.update(b"\x00performance")
        h.update(performance)
    return "baseline:" + h.hexdigest()[:16]


def baseline_key(model: str, version: str) -> bytes:
    """Kafka key of a baseline on the compacted baselines topic."""
    return f"{model}/{version}".encode()


class ReferenceStore:
    """Published baselines by (model, version); the newest published one wins."""

    def __init__(self) -> None:
        self._baselines: dict[tuple[str, str], Reference] = {}

    def put(self, reference: Reference) -> None:
        self._baselines[(reference.model, reference.model_version)] = reference

    def remove(self, model: str, version: str) -> None:
        self._baselines.pop((model, version), None)

    def get(self, model: str, version: str) -> Reference | None:
        return self._baselines.get((model, version))

    def keys(self) -> list[tuple[str, str]]:
        """The (model, version) of every baseline held."""
        return list(self._baselines)

    def __len__(self) -> int:
        return len(self._baselines)

    def all(self) -> list[Reference]:
        """Every baseline held, by (model, version)."""
        return [self._baselines[k] for k in sorted(self._baselines)]
