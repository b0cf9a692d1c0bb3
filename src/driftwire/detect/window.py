"""The detection window: the merge of a model version's last N evaluated buckets.

Stage 2 evaluates every bucket once it is complete; the window of bucket ``b`` is the ``size``
buckets ending with it, ``[b + bucket - size * bucket, b + bucket)``. Its profiles are merged
per segment and for all traffic together (segment ``all``); buckets in which the version had
no events are simply absent. The window is *complete* when every one of its buckets had
events: only a complete window is frozen as a reference (and gives the latency reference).

>>> from driftwire.sketch.profile import Profile
>>> def bucket(start: int, events: int) -> dict[str, Profile]:
...     p = Profile(start_ms=start, end_ms=start + 60_000)
...     p.add_events(events)
...     return {"region=eu": p}
>>> kept = {0: bucket(0, 10), 60_000: bucket(60_000, 10), 180_000: bucket(180_000, 10)}
>>> w = detection_window(kept, end_ms=240_000, size=3, bucket_ms=60_000)
>>> w.start_ms, w.buckets, w.complete, w.profiles[ALL_SEGMENTS].n_events
(60000, 2, False, 20)
>>> later = detection_window(kept, end_ms=360_000, size=3, bucket_ms=60_000)
>>> later.buckets, later.start_ms, sorted(later.profiles)     # two empty buckets later
(1, 180000, ['all', 'region=eu'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from driftwire.sketch.profile import Profile

__all__ = ["ALL_SEGMENTS", "Window", "detection_window", "segmented"]

#: The segment key of all of a version's traffic in a window.
ALL_SEGMENTS = "all"


@dataclass(frozen=True, slots=True)
class Window:
    """The window ``[start_ms, end_ms)``: merged profiles, and how much of it had events.

    ``profiles`` maps each segment (when segments are watched) and ``all`` to the merge of
    its buckets in the window; it is empty when no bucket of the window had events.
    ``buckets`` counts the window's buckets that had events; ``complete``: all of them did.
    """

    start_ms: int
    end_ms: int
    profiles: dict[str, Profile]
    buckets: int
    complete: bool


def detection_window(
    buckets: Mapping[int, Mapping[str, Profile]],
    *,
    end_ms: int,
    size: int,
    bucket_ms: int,
    segments: bool = True,
) -> Window:
    """The window of ``size`` buckets ending at ``end_ms`` over a version's evaluated buckets.

    ``buckets`` maps bucket starts to that bucket's profiles per segment. The profiles are
    copied, never merged into: the buckets stay as they were. ``segments=False`` keeps only
    all traffic. Profiles made with other sketch parameters cannot be merged
    (:class:`~driftwire.errors.FormatError`).
    """
    for name, value in (("bucket_ms", bucket_ms), ("size", size)):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if end_ms % bucket_ms:
        raise ValueError(f"{end_ms} is not the end of a {bucket_ms} ms bucket")
    first = end_ms - size * bucket_ms
    merged: dict[str, Profile] = {}
    total: Profile | None = None
    present = sorted(b for b in buckets if first <= b < end_ms)
    for bucket in present:
        for segment, profile in buckets[bucket].items():
            if segment in merged:
                merged[segment].merge(profile)
            else:
                merged[segment] = profile.copy()
            if total is None:
                total = profile.copy()
            else:
                total.merge(profile)
    if not segments or not segmented(merged):
        merged = {}  # an unsegmented model: its one segment is all traffic, evaluated once
    if total is not None:
        merged[ALL_SEGMENTS] = total
    return Window(first, end_ms, merged, len(present), len(present) == size)


def segmented(names: Iterable[str]) -> bool:
    """Whether profiles keyed by segment ``names`` have real segments, so that an ``all``
    aggregate beside them says something: two or more segment values, or any non-empty one.

    An unsegmented model has the one segment ``""``: its traffic *is* all traffic, evaluated
    once, as segment ``all``.

    >>> segmented([""]), segmented(["", ALL_SEGMENTS])
    (False, False)
    >>> segmented(["region=eu"]), segmented(["", "a=1"])
    (True, True)
    """
    keys = set(names) - {ALL_SEGMENTS}
    return len(keys) >= 2 or any(keys)
