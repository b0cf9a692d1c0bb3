"""Trailing and seasonal references: slot profiles of a version's own traffic, merged.

Every evaluated bucket's profiles are merged, per segment, into the *slot* that holds the
bucket (``detect.references.slot_minutes``, aligned to the epoch, UTC; an hour by default).
A slot closes when a bucket of a later slot arrives. Closed slots are what the references
are built from and what the shell stores, one value per (model, version, slot) under
:func:`slot_key`; they are never part of the detector's snapshot.

* ``trailing_window``: the closed slots that end within the ``trailing_hours`` before the
  window's start (the window itself is never part of it), so a slow benign change is followed;
* ``seasonal``: for k = 1 .. ``seasonal_periods``, the slots that overlap the window moved
  back k periods (a day or a week): the same hour of the week over the last weeks, so a
  daily or weekly pattern is not reported as drift.

Latency has its own reference (:meth:`History.latency`; ``detect.latency.reference``, the
same hour of the last 7 days by default, or the kind of the override ``model/latency_ms``),
built from the same slots, so a daily cycle of latency is compared with the same hours of
earlier days. A model whose latency alone uses slots (its drift reference is the baseline)
keeps only the latency sketch in them (slot format 2). A latency reference needs
``min_reference_count`` latencies in the segment; until then the baseline's latency, or the
first window's, is used and the alert's reference note says why.

A reference is rebuilt only when its set of slots changes (about once per slot), not every
bucket. Until a segment's trailing or seasonal profile holds enough events (``min_count``
under the calibrated rule, whose test widens for a small reference; ``min_reference_count``
under the fixed rule; for seasonal at least one past period) the segment is compared with the
baseline, or the frozen first window, and the reference's note says why. A model keeps slots
only if it or one of its features uses such a reference, and only as far back as they reach.
The part of a slot seen before a restart is lost with the restart (a slot is stored once,
when it closes).

Slot bytes: ``b"DWSL" | format 1 | slot_ms | start_ms | segments (name, profile bytes) |
CRC-32``; the profiles carry their sketch parameters. Format 2 (profiles of the latency alone)
adds a content byte (1) before the CRC; a full slot is still written as format 1, so its bytes
are those of the earlier release.

>>> slot_key("churn", "1.4.2", 3_600_000)
b'churn\\x00slot\\x001.4.2\\x003600000'
>>> parse_slot_key(slot_key("churn", "1.4.2", 3_600_000))
('churn', '1.4.2', 3600000)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from driftwire._codec import Reader, Writer, seal, unseal_any
from driftwire.alerts.alert import iso
from driftwire.detect.reference import ALL, Reference, segmented
from driftwire.detect.settings import DetectSettings
from driftwire.errors import FormatError
from driftwire.sketch.profile import Profile, Sketch

__all__ = ["Choice", "History", "decode_slot", "encode_slot", "parse_slot_key", "slot_key"]

BASELINE, TRAILING, SEASONAL = "baseline", "trailing_window", "seasonal"
LATENCY = "latency_ms"  # the name of the latency in references.overrides (model/latency_ms)
_MAGIC = b"DWSL"
_FORMAT = 1  # every sketch of the profiles (the bytes of the earlier release)
_LATENCY_FORMAT = 2  # latency sketches alone, then a content byte
_HOUR_MS = 3_600_000
_PERIOD_MS = {"day": 24 * _HOUR_MS, "week": 7 * 24 * _HOUR_MS}


def slot_key(model: str, version: str, start_ms: int) -> bytes:
    """State-store key of one slot: ``model \\0 slot \\0 version \\0 start``."""
    return b"\x00".join((model.encode(), b"slot", version.encode(), str(start_ms).encode()))


def is_slot_key(key: bytes) -> bool:
    return key.count(b"\x00") == 3 and b"\x00slot\x00" in key


def parse_slot_key(key: bytes) -> tuple[str, str, int]:
    """``(model, version, start_ms)`` of a :func:`slot_key`."""
    parts = key.split(b"\x00")
    if len(parts) != 4 or parts[1] != b"slot":
        raise FormatError(f"not a slot key: {key[:80]!r}")
    try:
        return parts[0].decode(), parts[2].decode(), int(parts[3])
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"bad slot key {key[:80]!r}: {exc}") from exc


def encode_slot(
    start_ms: int, slot_ms: int, profiles: Mapping[str, Profile], *, latency_only: bool = False
) -> bytes:
    """Slot bytes; ``latency_only``: the profiles hold the latency alone (format 2)."""
    w = Writer()
    w.uvarint(slot_ms)
    w.svarint(start_ms)
    w.uvarint(len(profiles))
    for segment in sorted(profiles):
        w.text(segment)
        w.blob(profiles[segment].to_bytes())
    if latency_only:
        w.u8(1)
    return seal(_MAGIC, _LATENCY_FORMAT if latency_only else _FORMAT, w.getvalue())


def read_slot(blob: bytes) -> tuple[int, int, dict[str, Profile], bool]:
    """``(start_ms, slot_ms, profiles by segment, latency_only)`` of :func:`encode_slot` bytes."""
    version, payload = unseal_any(blob, _MAGIC, (_FORMAT, _LATENCY_FORMAT), "Slot")
    r = Reader(payload, "Slot")
    slot_ms, start_ms = r.uvarint(), r.svarint()
    profiles = {r.text(): Profile.from_bytes(r.blob()) for _ in range(r.uvarint())}
    latency_only = version == _LATENCY_FORMAT
    if latency_only and r.u8() != 1:
        raise FormatError("Slot: bad content flag")
    r.done()
    return start_ms, slot_ms, profiles, latency_only


def decode_slot(blob: bytes) -> tuple[int, int, dict[str, Profile]]:
    """``(start_ms, slot_ms, profiles by segment)`` of :func:`encode_slot` bytes."""
    start_ms, slot_ms, profiles, _ = read_slot(blob)
    return start_ms, slot_ms, profiles


@dataclass(frozen=True)
class Span:
    """Which closed slots a trailing or seasonal reference merges.

    ``trailing_window``: those ending within ``reach_ms`` before the window; ``seasonal``:
    those overlapping the window moved back 1 .. ``periods`` x ``period``.
    """

    kind: str
    reach_ms: int = 0  # trailing_window
    period: str = ""  # seasonal: "day" or "week"
    periods: int = 0

    @property
    def period_ms(self) -> int:
        return _PERIOD_MS[self.period]

    @property
    def back_ms(self) -> int:
        """How far back from the window its slots lie."""
        return self.reach_ms if self.kind == TRAILING else self.periods * self.period_ms


@dataclass(frozen=True)
class _Plan:
    """What one model keeps slots for."""

    kind: str  # the model's drift reference kind
    drift: Mapping[str, Span]  # kind -> span, every non-baseline kind the model's features use
    features: Mapping[str, str]  # feature -> kind, where it differs from the model's
    latency: Span | None  # the latency's span; None: baseline

    @property
    def keeps(self) -> bool:
        return bool(self.drift) or self.latency is not None

    @property
    def latency_only(self) -> bool:
        """Only the latency uses slots: they keep latency sketches alone."""
        return not self.drift and self.latency is not None


@dataclass
class _Slots:
    """One version's slot profiles and the references last built from them."""

    closed: dict[int, dict[str, Profile]] = field(default_factory=dict)
    open_start: int | None = None
    open: dict[str, Profile] = field(default_factory=dict)
    reopened: int = 0  # bumps when a closed slot takes buckets again: cached builds are stale
    built: dict[Span, tuple[tuple[object, ...], Reference | None, str]] = field(
        default_factory=dict
    )
    choice: tuple[tuple[int, ...], Choice] | None = None


def _sketch(profile: Profile, name: str) -> Sketch | None:
    if name == "prediction.score":
        return profile.prediction_score
    if name == "prediction.label":
        return profile.prediction_label
    return profile.feature(name)


def _union(profiles: Iterable[Profile]) -> Profile:
    """One profile of several (all traffic of the segments); the inputs are not changed."""
    out: Profile | None = None
    for p in profiles:
        out = p.copy() if out is None else out.merge(p)
    if out is None:
        raise ValueError("nothing to merge")
    return out


class Choice:
    """The references of one window, per segment and feature, after the fallback."""

    def __init__(
        self,
        fallback: Reference,
        kind: str,
        features: Mapping[str, str],
        built: Mapping[str, tuple[Reference | None, str]],
        need: int,
    ) -> None:
        self._fallback = fallback
        self._kind = kind
        self._features = features  # feature -> kind, where it differs from the model's
        self._built = built  # kind -> (reference or None, progress text)
        self._need = need
        self._profiles: dict[str, Profile] = {}
        self._waiting: dict[tuple[str, str], Reference] = {}

    def reference(self, segment: str, feature: str | None = None) -> Reference:
        """The reference ``segment`` (or one feature of it) is compared with."""
        kind = self._kind if feature is None else self._features.get(feature, self._kind)
        if kind == BASELINE:
            return self._fallback
        built, progress = self._built[kind]
        if built is not None:
            profile = built.profiles.get(segment)
            if profile is not None and profile.n_events >= self._need:
                return built
        waiting = self._waiting.get((kind, segment))
        if waiting is None:
            profile = None if built is None else built.profiles.get(segment)
            n = 0 if profile is None else profile.n_events
            fb = self._fallback
            note = (
                f"{kind}: {progress}, {n} events (needs {self._need}); until then the "
                f"{fb.kind.replace('_', ' ')} is the reference. {fb.note}"
            )
            waiting = self._waiting[(kind, segment)] = replace(fb, note=note.strip())
        return waiting

    def profile(self, segment: str) -> Profile:
        """The reference profile of ``segment``, each feature's sketch from its own reference."""
        found = self._profiles.get(segment)
        if found is None:
            base = self.reference(segment)
            found = base.profile(segment)
            swaps: dict[str, Sketch] = {}
            for feature in self._features:
                ref = self.reference(segment, feature)
                sketch = (
                    None
                    if ref.profiles is base.profiles
                    else _sketch(ref.profile(segment), feature)
                )
                if sketch is not None:
                    swaps[feature] = sketch
            if swaps:
                found = found.with_sketches(swaps)
            self._profiles[segment] = found
        return found


class History:
    """Slot profiles per (model, version) and the trailing / seasonal references built on them.

    Pure: the caller adds each evaluated bucket, asks for a window's :class:`Choice`, drains
    the closed (or expired) slots to store them, and loads them back after a restart. A model
    whose latency alone uses slots (its drift reference is the baseline) keeps latency sketches
    alone in them.
    """

    def __init__(self, detect: DetectSettings, *, bucket_ms: int) -> None:
        detect.check(bucket_ms)
        self._d = detect
        self._s = detect.references
        self._segments = detect.segments
        # under the calibrated rule a smaller reference widens the test instead of misleading
        # it, so a trailing or seasonal drift reference is used from a window's minimum on
        self._need = detect.min_reference_count if detect.rule == "fixed" else detect.min_count
        self._window_ms = detect.window_buckets * bucket_ms
        self._slot = self._s.slot_ms
        self._slots: dict[tuple[str, str], _Slots] = {}
        self._latest: dict[str, int] = {}  # model -> newest bucket added
        self._outbox: dict[bytes, tuple[str, str, int]] = {}  # to store (or delete)
        self._plans: dict[str, _Plan] = {}

    def _span(self, kind: str, period: str, periods: int) -> Span | None:
        if kind == TRAILING:
            return Span(TRAILING, reach_ms=round(self._s.trailing_hours * _HOUR_MS))
        if kind == SEASONAL:
            return Span(SEASONAL, period=period, periods=periods)
        return None

    def _plan(self, model: str) -> _Plan:
        """The spans ``model``'s drift and latency references use, and its feature overrides."""
        plan = self._plans.get(model)
        if plan is None:
            kind = self._s.kind(model)
            prefix = f"{model}/"
            features: dict[str, str] = {
                key[len(prefix) :]: k
                for key, k in self._s.overrides.items()
                if key.startswith(prefix) and key != prefix + LATENCY and k != kind
            }
            drift: dict[str, Span] = {}
            for k in {kind, *features.values()}:
                span = self._span(k, self._s.seasonal_period, self._s.seasonal_periods)
                if span is not None:
                    drift[k] = span
            latency = self._span(*self._d.latency_reference(model))
            if not self._d.latency.enabled:
                latency = None
            plan = self._plans[model] = _Plan(kind, drift, features, latency)
        return plan

    def retention_ms(self, model: str) -> int:
        """How far back ``model``'s references reach (0: it keeps no slots)."""
        plan = self._plan(model)
        spans = [*plan.drift.values(), *([plan.latency] if plan.latency else [])]
        reach = max((span.back_ms for span in spans), default=0)
        return reach + self._window_ms + self._slot if reach else 0

    # -- input ------------------------------------------------------------------------------

    def add(
        self, model: str, version: str, bucket_ms: int, profiles: Mapping[str, Profile]
    ) -> None:
        """Merge one evaluated bucket's profiles (by segment) into its slot."""
        plan = self._plan(model)
        if not plan.keeps:
            return
        if plan.latency_only:
            profiles = {segment: p.latency_part() for segment, p in profiles.items()}
        start = bucket_ms - bucket_ms % self._slot
        slots = self._slots.setdefault((model, version), _Slots())
        if slots.open_start != start:
            if slots.open_start is not None:
                self._close(model, version, slots)
            slots.open_start = start
            slots.open = slots.closed.pop(start, {})
            if slots.open:
                slots.reopened += 1
        if not self._segments:  # windows only have all traffic: so do the slots
            profiles = {ALL: _union(profiles.values())} if profiles else {}
        for segment, profile in profiles.items():
            mine = slots.open.get(segment)
            if mine is None:
                slots.open[segment] = profile if plan.latency_only else profile.copy()
            else:
                mine.merge(profile)
        self._latest[model] = max(bucket_ms, self._latest.get(model, bucket_ms))

    def _close(self, model: str, version: str, slots: _Slots) -> None:
        start = slots.open_start
        if start is None:
            return
        slots.closed[start] = slots.open
        slots.open_start, slots.open = None, {}
        self._outbox[slot_key(model, version, start)] = (model, version, start)
        self._expire(model)

    def _expire(self, model: str) -> None:
        """Forget (and mark for deletion) slots older than the model's references reach."""
        cutoff = self._latest.get(model, 0) - self.retention_ms(model)
        for (m, version), slots in list(self._slots.items()):
            if m != model:
                continue
            for start in [s for s in slots.closed if s + self._slot <= cutoff]:
                del slots.closed[start]
                self._outbox[slot_key(m, version, start)] = (m, version, start)
            stale = slots.open_start is None or slots.open_start + self._slot <= cutoff
            if not slots.closed and stale:
                del self._slots[(m, version)]

    def forget(self, model: str, version: str | None = None) -> None:
        """Drop (and mark for deletion) the slots of a retired version, or of every version of
        a retired model."""
        for m, v in [k for k in self._slots if k[0] == model and version in (None, k[1])]:
            slots = self._slots.pop((m, v))
            for start in [*slots.closed, *([] if slots.open_start is None else [slots.open_start])]:
                self._outbox[slot_key(m, v, start)] = (m, v, start)
        if version is None:
            self._latest.pop(model, None)
            self._plans.pop(model, None)

    # -- references ---------------------------------------------------------------------------

    def choose(self, model: str, version: str, fallback: Reference, start: int, end: int) -> Choice:
        """The references of the window ``[start, end)``; ``fallback`` is baseline or frozen."""
        plan = self._plan(model)
        if not plan.drift:
            return Choice(fallback, plan.kind, plan.features, {}, self._need)
        slots = self._slots.get((model, version)) or _Slots()
        built = {
            k: self._build(model, version, slots, span, start, end)
            for k, span in sorted(plan.drift.items())
        }
        key = (id(fallback), *(id(r) for r, _ in built.values()))
        if slots.choice is None or slots.choice[0] != key:
            slots.choice = (key, Choice(fallback, plan.kind, plan.features, built, self._need))
        return slots.choice[1]

    def latency(
        self, model: str, version: str, start: int, end: int
    ) -> tuple[str, Reference | None, str, list[dict[str, Profile]]]:
        """What the latency of the window ``[start, end)`` is compared with.

        ``(kind, built, progress, parts)``: the reference kind of ``model``'s latency
        (:meth:`DetectSettings.latency_reference <driftwire.detect.settings.DetectSettings.
        latency_reference>`: ``detect.latency.reference``, or an override ``model/latency_ms``);
        for ``trailing_window`` / ``seasonal`` the reference built from the slots (``None``
        before any slot), its progress text and the slot profiles it merges (their spread
        widens the latency test); for ``baseline`` ``(baseline, None, "", [])``.
        """
        span = self._plan(model).latency
        if span is None:
            return BASELINE, None, "", []
        slots = self._slots.get((model, version)) or _Slots()
        built, progress = self._build(model, version, slots, span, start, end)
        chosen = [s for s in slots.built[span][0][1:] if isinstance(s, int)]
        return span.kind, built, progress, [slots.closed[s] for s in chosen if s in slots.closed]

    def _build(
        self, model: str, version: str, slots: _Slots, span: Span, start: int, end: int
    ) -> tuple[Reference | None, str]:
        slot = self._slot
        periods = 0
        if span.kind == TRAILING:
            chosen = sorted(s for s in slots.closed if start - span.reach_ms < s + slot <= start)
        else:
            chosen = []
            for k in range(1, span.periods + 1):
                lo, hi = start - k * span.period_ms, end - k * span.period_ms
                found = [s for s in range(lo - lo % slot, hi, slot) if s in slots.closed]
                periods += bool(found)
                chosen += found
            chosen.sort()
        key: tuple[object, ...] = (slots.reopened, *chosen)
        cached = slots.built.get(span)
        if cached is None or cached[0] != key:
            ref = self._merge(model, version, span, chosen, slots, periods) if chosen else None
            cached = slots.built[span] = (key, ref, self._progress(span, len(chosen), periods))
        return cached[1], cached[2]

    def _progress(self, span: Span, n_slots: int, periods: int) -> str:
        if span.kind == TRAILING:
            hours = n_slots * self._slot / _HOUR_MS
            return f"{hours:g} h of {span.reach_ms / _HOUR_MS:g} h"
        return f"{periods} of {span.periods} {span.period}s"

    def _merge(
        self, model: str, version: str, span: Span, chosen: list[int], slots: _Slots, periods: int
    ) -> Reference:
        merged: dict[str, Profile] = {}
        for start in chosen:
            for segment, profile in slots.closed[start].items():
                mine = merged.get(segment)
                if mine is None:
                    merged[segment] = profile.copy()
                else:
                    mine.merge(profile)
        if not self._segments or not segmented(merged):
            merged = {ALL: _union(merged.values())}  # all traffic, once
        else:
            merged[ALL] = _union(merged.values())
        first, last = iso(chosen[0]), iso(chosen[-1] + self._slot)
        described: dict[str, object] = {"start": first, "end": last, "slots": len(chosen)}
        progress = self._progress(span, len(chosen), periods)
        kind = span.kind
        if kind == TRAILING:
            note = f"trailing_window: {progress} of this version's own traffic before the window."
        else:
            described.update(period=span.period, periods=periods)
            note = (
                f"seasonal: {progress}, the same time of the {span.period} "
                "in this version's own traffic."
            )
        return Reference(
            kind=kind,
            id=f"{kind}:{model}/{version}@{first}/{last}",
            model=model,
            model_version=version,
            profiles=merged,
            note=note,
            created_ms=chosen[-1] + self._slot,
            meta={"span": described},
        )

    # -- persistence ----------------------------------------------------------------------------

    def discard(self) -> None:
        """Forget the slots :meth:`drain` would hand out: for a shell that stores no state."""
        self._outbox.clear()

    def drain(self) -> list[tuple[str, bytes, bytes | None]]:
        """``(model, key, slot bytes)`` of each slot closed since the last call; ``None``:
        the slot expired, delete it."""
        out: list[tuple[str, bytes, bytes | None]] = []
        for key, (model, version, start) in self._outbox.items():
            slots = self._slots.get((model, version))
            if slots is not None and slots.open_start == start:
                continue  # taking buckets again: stored when it closes again
            profiles = None if slots is None else slots.closed.get(start)
            only = self._plan(model).latency_only
            blob = (
                None
                if profiles is None
                else encode_slot(start, self._slot, profiles, latency_only=only)
            )
            out.append((model, key, blob))
        self._outbox.clear()
        return out

    def keys(self, model: str, versions: Iterable[str], latest_ms: int) -> list[bytes]:
        """Store keys of every slot ``model``'s references may need, as of ``latest_ms``."""
        reach = self.retention_ms(model)
        if not reach:
            return []
        slot = self._slot
        last = latest_ms - latest_ms % slot
        first = last - (reach // slot + 1) * slot
        return [slot_key(model, v, s) for v in versions for s in range(first, last + 1, slot)]

    def load(self, key: bytes, blob: bytes) -> None:
        """Take back a stored slot (after a restart).

        A slot of latency alone cannot serve a drift reference (the settings changed since it
        was stored): it is dropped and marked for deletion, and the reference fills again. A
        full slot of a model that now keeps latency alone keeps only its latency.
        """
        model, version, start = parse_slot_key(key)
        found, slot_ms, profiles, latency_only = read_slot(blob)
        if found != start or slot_ms != self._slot:
            raise FormatError(
                f"slot {key!r} holds {slot_ms} ms from {found}; settings say {self._slot} ms"
            )
        plan = self._plan(model)
        if not plan.keeps:
            return
        if latency_only and not plan.latency_only:
            self._outbox[key] = (model, version, start)
            return
        if plan.latency_only and not latency_only:
            profiles = {segment: p.latency_part() for segment, p in profiles.items()}
        slots = self._slots.setdefault((model, version), _Slots())
        if slots.open_start != start:
            slots.closed[start] = profiles
            slots.built.clear()
