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
from dataclasses import dataclass, field
from typing import Any

import orjson

from driftwire.alerts.alert import iso
from driftwire.errors import FormatError
from driftwire.sketch.profile import Profile

FORMAT = 1
ALL = "all"


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
        return {
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


def baseline_id(model: str, version: str, profiles: dict[str, Profile]) -> str:
    """A content hash, so the same training data gives the same id."""
    h = hashlib.sha256(f"{model}\x00{version}".encode())
    for segment in sorted(profiles):
        h.update(segment.encode())
        h.update(profiles[segment].to_bytes())
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

    def __len__(self) -> int:
        return len(self._baselines)
