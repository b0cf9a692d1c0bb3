"""A baseline from logged inference events: the stream's own format, profiled as the stream does.

A file of inference events (JSON Lines, one event of ``schemas/inference-event.schema.json`` per
line) is decoded by the stage-1 decoder and folded by the stage-1 profiler into one bucket that
spans the whole file, so that the baseline holds exactly what the live stage would have made of
the same events: the events' ``features`` (with the same kind inference and caps), the
prediction score and label, the latency, and one profile per segment plus ``all``. The envelope
(``event_id``, ``timestamp``, ...) is never profiled. Lines the decoder refuses are counted and
reported, not folded.

>>> import orjson
>>> lines = [orjson.dumps({"timestamp": 1_000 * i, "model": "churn", "model_version": "2",
...     "segment": {"region": "eu" if i % 2 else "us"}, "features": {"age": 30 + i % 7,
...     "plan": "gold"}, "prediction": 0.5, "latency_ms": 12}) for i in range(40)]
>>> built = build_event_baseline(iter([lines]), created_ms=0, source="events.jsonl")
>>> ref = built.reference
>>> ref.model, ref.model_version, sorted(ref.profiles), sorted(ref.profiles["all"].features)
('churn', '2', ['all', 'region=eu', 'region=us'], ['age', 'plan'])
>>> built.events, built.rejected
(40, 0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from driftwire.decode.decoder import decode_batch
from driftwire.decode.limits import DecoderLimits
from driftwire.detect.reference import Reference, baseline_id
from driftwire.detect.window import detection_window
from driftwire.errors import InputError
from driftwire.profiling.catalog import ModelCatalog, ProfilerLimits
from driftwire.profiling.clock import EventClock
from driftwire.profiling.profiler import Profiler
from driftwire.sketch.profile import Profile

__all__ = [
    "EventBaseline",
    "EventBaselineBuilder",
    "build_event_baseline",
    "event_lines",
    "looks_like_events",
]

#: One bucket for the whole file: event times are epoch ms in [0, 2^53).
_SPAN_MS = 1 << 53
_REQUIRED = frozenset(("timestamp", "model", "model_version", "features"))
LINES_PER_BATCH = 5_000


def looks_like_events(path: Path) -> bool:
    """Whether ``path`` is JSON Lines of inference events: its first line is an object with
    ``timestamp``, ``model``, ``model_version`` and a ``features`` object.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "e.jsonl"
    ...     _ = p.write_text('{"timestamp": 1, "model": "m", "model_version": "1", '
    ...                      '"features": {"x": 1}, "prediction": 1, "latency_ms": 2}\\n')
    ...     q = Path(d) / "t.jsonl"
    ...     _ = q.write_text('{"x": 1, "y": "a"}\\n')
    ...     looks_like_events(p), looks_like_events(q)
    (True, False)
    """
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        return False
    try:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    first = orjson.loads(line)
                    break
            else:
                return False
    except (OSError, orjson.JSONDecodeError):
        return False
    return (
        isinstance(first, dict)
        and first.keys() >= _REQUIRED
        and isinstance(first.get("features"), dict)
    )


def event_lines(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[list[bytes]]:
    """The non-empty lines of ``path`` in lists of :data:`LINES_PER_BATCH`; ``progress`` gets
    the bytes read."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from exc
    with handle:
        chunk: list[bytes] = []
        for line in handle:
            if progress is not None:
                progress(len(line))
            stripped = line.rstrip(b"\r\n")
            if stripped:
                chunk.append(stripped)
                if len(chunk) >= LINES_PER_BATCH:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


@dataclass(frozen=True)
class EventBaseline:
    """The baseline, and what the file held besides it."""

    reference: Reference
    events: int  # events of the chosen model version that were profiled
    rejected: int  # lines the decoder refused
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    first_rejection: str = ""  # "line N: reason field message"
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)  # other model versions
    overflow: dict[tuple[str, str], int] = field(default_factory=dict)  # capped segments etc.


class EventBaselineBuilder:
    """Folds batches of raw event values (:meth:`add`); :meth:`finish` makes the baseline."""

    def __init__(
        self,
        *,
        decoder_limits: DecoderLimits | None = None,
        profiler_limits: ProfilerLimits | None = None,
    ) -> None:
        self._limits = decoder_limits or DecoderLimits()
        self._profiler = Profiler(
            EventClock(bucket_ms=_SPAN_MS, allowed_lateness_ms=_SPAN_MS),
            catalog=ModelCatalog(profiler_limits),
        )
        self._rejected: Counter[str] = Counter()
        self._first_rejection = ""
        self._offset = 0

    def add(self, values: list[bytes]) -> None:
        batch = decode_batch(values, self._limits)
        for r in batch.rejections:
            self._rejected[r.reason] += 1
            if not self._first_rejection:
                where = f"line {self._offset + r.index + 1}: {r.reason} {r.field or ''} "
                self._first_rejection = (where + r.message).replace("  ", " ")
        if len(batch):
            self._profiler.fold(batch)
        self._offset += len(values)

    def finish(
        self,
        *,
        created_ms: int,
        source: str,
        model: str | None = None,
        model_version: str | None = None,
    ) -> EventBaseline:
        versions: dict[tuple[str, str], dict[str, Profile]] = {}
        for bucket in self._profiler.flush():
            per = versions.setdefault((bucket.model, bucket.model_version), {})
            for segment, profile in bucket.segments.items():
                if segment in per:
                    per[segment].merge(profile)
                else:
                    per[segment] = profile
        rejected = sum(self._rejected.values())
        key = _choose(versions, model, model_version, source, rejected)
        window = detection_window({0: versions[key]}, end_ms=_SPAN_MS, size=1, bucket_ms=_SPAN_MS)
        profiles = window.profiles
        count = profiles["all"].n_events
        skipped = {k: sum(p.n_events for p in v.values()) for k, v in versions.items() if k != key}
        reference = Reference(
            kind="baseline",
            id=baseline_id(key[0], key[1], profiles),
            model=key[0],
            model_version=key[1],
            profiles=profiles,
            note=f"Baseline built from the inference events of {source} ({count} events).",
            created_ms=created_ms,
            meta={"source": source, "rows": count, "format": "events"},
        )
        return EventBaseline(
            reference,
            count,
            rejected,
            self._rejected,
            self._first_rejection,
            skipped,
            dict(self._profiler.overflow_counts),
        )


def build_event_baseline(
    batches: Iterable[list[bytes]],
    *,
    created_ms: int,
    source: str,
    model: str | None = None,
    model_version: str | None = None,
    decoder_limits: DecoderLimits | None = None,
    profiler_limits: ProfilerLimits | None = None,
) -> EventBaseline:
    """Profile the inference events of ``batches`` (raw JSON values) into a baseline.

    ``model`` / ``model_version`` pick one model version when the events hold several; left
    out, the events must hold exactly one (else an :class:`InputError` lists them).
    """
    builder = EventBaselineBuilder(decoder_limits=decoder_limits, profiler_limits=profiler_limits)
    for values in batches:
        builder.add(values)
    return builder.finish(
        created_ms=created_ms, source=source, model=model, model_version=model_version
    )


def _choose(
    versions: dict[tuple[str, str], dict[str, Profile]],
    model: str | None,
    version: str | None,
    source: str,
    rejected: int,
) -> tuple[str, str]:
    if not versions:
        why = f" ({rejected} lines refused by the decoder)" if rejected else ""
        raise InputError(f"{source}: no valid inference event{why}")
    found = sorted(versions)
    listed = ", ".join(f"{m} {v}" for m, v in found[:10]) + (" ..." if len(found) > 10 else "")
    matching = [
        k
        for k in found
        if (model is None or k[0] == model) and (version is None or k[1] == version)
    ]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        wanted = " ".join(x for x in (model, version) if x is not None)
        raise InputError(
            f"{source}: no events of {wanted} (the file holds {listed}); "
            "fix --model / --model-version"
        )
    raise InputError(
        f"{source}: the events hold {len(matching)} model versions ({listed}); "
        "pick one with --model and --model-version"
    )
