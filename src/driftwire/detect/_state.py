"""What :class:`~driftwire.detect.detector.Detector` keeps per model, and its snapshot.

A model's state (:class:`_Model`) holds, per version (:class:`_Version`), the profiles of
the last evaluated buckets and of those still being assembled, the frozen reference, the rate
and latency state, the never-seen categories counted since they first appeared, plus the
model's completeness, the partial ids and offset spans already merged, the traffic per bucket,
the held-back alerts, the incidents' members and the ledger.
:func:`model_snapshot` turns it (and the model's alert-policy conditions) into a JSON-able
dict, bytes as hex;
:func:`restored_model` reads it back. The evaluated buckets and the frozen reference are
stored apart, once each (:mod:`driftwire.detect._parts`): the snapshot only names them,
and a restored version lists what is still to be loaded (``unloaded``, ``frozen_id``). A
snapshot of the earlier layout, with those parts inline, is still read. The buckets still
being assembled (``pending``) are stored apart too, each write a new generation that the
snapshot names (earlier snapshots held them inline, as hex: still read). The shell stores the
snapshot and compares its bytes, so its layout is part of the state format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftwire.alerts.policy import AlertPolicy
from driftwire.detect.canary import VersionLedger
from driftwire.detect.completeness import Completeness
from driftwire.detect.latency import Creep, LatencyReference
from driftwire.detect.new_categories import NewCategories
from driftwire.detect.reference import Reference
from driftwire.detect.settings import DetectSettings
from driftwire.detect.throughput import RateState
from driftwire.sketch.profile import Profile


@dataclass
class _Version:
    buckets: dict[int, dict[str, Profile]] = field(default_factory=dict)  # evaluated, last N
    pending: dict[int, dict[str, Profile]] = field(default_factory=dict)  # being assembled
    frozen: Reference | None = None
    rate: RateState = field(default_factory=RateState)
    latency_ref: dict[str, LatencyReference] | None = None  # first complete window's latency
    creep: dict[str, Creep] = field(default_factory=dict)  # per segment
    # never-seen categories counted since they first appeared (absent from earlier snapshots)
    new_categories: NewCategories = field(default_factory=NewCategories)
    # built latency references by segment, keyed by the reference profile (not persisted)
    latency_cache: dict[str, tuple[object, LatencyReference]] = field(default_factory=dict)
    # after a restore: parts named by the snapshot, not loaded yet (see driftwire.detect._parts)
    unloaded: set[int] = field(default_factory=set)
    frozen_id: str | None = None
    # pending bucket -> generation of its stored part (driftwire.detect._parts; 0: not stored
    # yet); after a restore, the buckets named here and not in ``pending`` are still unloaded
    pending_gen: dict[int, int] = field(default_factory=dict)

    def pending_names(self) -> dict[str, int]:
        """The pending buckets for the snapshot: start -> generation of the stored part."""
        starts = sorted(set(self.pending) | set(self.pending_gen))
        return {str(b): self.pending_gen.get(b, 0) for b in starts}


@dataclass
class _Model:
    completeness: Completeness
    versions: dict[str, _Version] = field(default_factory=dict)
    seen_ids: dict[str, int] = field(default_factory=dict)  # partial id -> bucket end
    # partial span key -> [first, last, bucket end] merged last (driftwire.partials.admit_partial)
    spans: dict[str, list[int]] = field(default_factory=dict)
    evaluated_until: int | None = None
    late_partials: int = 0
    traffic: dict[int, int] = field(default_factory=dict)  # bucket start -> events, any version
    last_bucket: int | None = None  # start of the newest evaluated bucket
    muted: dict[str, str] = field(default_factory=dict)  # condition key -> why it is held back
    # incident key -> its membership (driftwire.alerts.incident.Membership.to_state)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger: VersionLedger = field(default_factory=VersionLedger)  # first / last seen per version
    compared: set[str] = field(default_factory=set)  # version_comparison keys (not persisted)


def model_snapshot(model: str, m: _Model, policy: AlertPolicy) -> dict[str, Any]:
    """Everything needed to resume ``model`` after a restart (JSON-able, bytes as hex)."""
    return {
        "versions": {
            v: {
                "buckets": sorted(st.buckets),  # stored apart, once each
                "pending": st.pending_names(),  # stored apart, by generation
                "frozen_id": st.frozen.id if st.frozen is not None else st.frozen_id,
                "rate": st.rate.to_state(),
                "latency_ref": None
                if st.latency_ref is None
                else {s: r.to_state() for s, r in st.latency_ref.items()},
                "creep": {s: c.to_state() for s, c in st.creep.items()},
                "new_categories": st.new_categories.to_state(),
            }
            for v, st in m.versions.items()
        },
        "seen_ids": m.seen_ids,
        "spans": m.spans,
        "completeness": m.completeness.to_state(),
        "evaluated_until": m.evaluated_until,
        "traffic": {str(b): n for b, n in m.traffic.items()},
        "last_bucket": m.last_bucket,
        "muted": m.muted,
        "incidents": m.incidents,
        "ledger": m.ledger.to_state(),
        "policy": {k: v for k, v in policy.to_state().items() if k.startswith(f"{model}/")},
    }


def restored_model(state: dict[str, Any], detect: DetectSettings) -> _Model:
    """The model :func:`model_snapshot` described (its ``policy`` part is the caller's)."""
    m = _Model(
        seen_ids=dict(state["seen_ids"]),
        spans={k: [int(x) for x in v] for k, v in state.get("spans", {}).items()},  # absent before
        completeness=Completeness.from_state(
            int(detect.grace_seconds * 1000), state["completeness"]
        ),
        evaluated_until=state["evaluated_until"],
        traffic={int(b): int(n) for b, n in state.get("traffic", {}).items()},
        last_bucket=state.get("last_bucket"),
        muted=dict(state.get("muted", {})),
        incidents=dict(state.get("incidents", {})),  # absent from earlier snapshots
        ledger=VersionLedger.from_state(state.get("ledger", {})),
    )
    for v, st in state["versions"].items():
        latency_ref = st.get("latency_ref")
        buckets = st["buckets"]
        inline = isinstance(buckets, dict)  # the earlier layout
        m.versions[v] = _Version(
            buckets={
                int(b): {s: Profile.from_bytes(bytes.fromhex(h)) for s, h in segs.items()}
                for b, segs in (buckets.items() if inline else ())
            },
            unloaded=set() if inline else {int(b) for b in buckets},
            frozen_id=st.get("frozen_id"),
            pending={
                int(b): {s: Profile.from_bytes(bytes.fromhex(h)) for s, h in segs.items()}
                for b, segs in st["pending"].items()
                if isinstance(segs, dict)  # the earlier layout: inline, as hex
            },
            pending_gen={
                int(b): int(gen) for b, gen in st["pending"].items() if not isinstance(gen, dict)
            },
            frozen=Reference.from_state(st["frozen"]) if st.get("frozen") else None,
            rate=RateState.from_state(st["rate"]) if "rate" in st else RateState(),
            latency_ref=None
            if latency_ref is None
            else {s: LatencyReference.from_state(r) for s, r in latency_ref.items()},
            creep={s: Creep.from_state(detect.latency, c) for s, c in st.get("creep", {}).items()},
            new_categories=NewCategories.from_state(st.get("new_categories")),
        )
    return m
