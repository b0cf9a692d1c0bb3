"""Baselines nothing uses, and models that run without one while a similar name has one.

A baseline is published for a (model, version); a typo in the model name leaves it unused, and
the model is then compared with its own first window, frozen, without a word. Two notices say
so (pure: the caller logs them, counts them in a gauge or prints them):

* ``unmatched``: a loaded baseline whose model sent no events while ``after_buckets`` buckets
  were evaluated since the baseline was first seen (``detect.unmatched_baseline_buckets``);
  at the end of a replay (``final``), any baseline whose model never sent an event;
* ``similar``: a model version freezes its first window as its reference while baselines exist
  for models with a close name (:func:`difflib.get_close_matches`, case-insensitive).

>>> m = BaselineMatcher(bucket_ms=60_000, after_buckets=2)
>>> m.check([("churn-modle", "1")], live=["churn-model"], final=True)
>>> [n.message for n in m.take()]  # doctest: +NORMALIZE_WHITESPACE
['baseline churn-modle 1 matches no model: no event of model churn-modle reached this
  detector by the end of the stream; models with events: churn-model. Is churn-modle a typo
  of churn-model? Publish the baseline under the model name the events carry
  (driftwire baseline build --model NAME)']
>>> m.frozen("churn-model", "1", [("churn-modle", "1")])
>>> [(n.kind, n.model, n.similar) for n in m.take()]
[('similar', 'churn-model', ('churn-modle 1',))]
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BaselineMatcher", "BaselineNotice", "similar_models"]

#: at most this many similar names are listed
_SIMILAR = 3
#: ``difflib`` ratio from which two model names count as similar
_CUTOFF = 0.6


def similar_models(name: str, candidates: Iterable[str]) -> list[str]:
    """Names in ``candidates`` (other than ``name``) close to ``name``, closest first.

    >>> similar_models("fraud", ["Fraud", "fraud", "churn", "frauds"])
    ['Fraud', 'frauds']
    """
    by_lower: dict[str, list[str]] = {}
    for c in candidates:
        if c != name:
            by_lower.setdefault(c.lower(), []).append(c)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=_SIMILAR, cutoff=_CUTOFF)
    return [c for lower in close for c in sorted(by_lower[lower])][:_SIMILAR]


@dataclass(frozen=True)
class BaselineNotice:
    """One thing to tell the operator about a baseline that is not used as intended."""

    kind: Literal["unmatched", "similar"]
    model: str
    model_version: str
    similar: tuple[str, ...]  # "model version" of similar baselines, or similar live models
    buckets: int  # evaluated buckets waited (unmatched); 0 at the end of a stream

    @property
    def message(self) -> str:
        if self.kind == "similar":
            return (
                f"{self.model} {self.model_version} has no baseline: its first window is "
                "frozen as its reference, while baselines exist for similar model names: "
                f"{', '.join(self.similar)}. If one of them was meant for this model, publish "
                "it again under the model name the events carry (driftwire baseline build "
                f"--model {self.model} --model-version {self.model_version} --publish)"
            )
        waited = (
            "by the end of the stream"
            if self.buckets == 0
            else f"while {self.buckets} buckets were evaluated since it was loaded "
            "(detect.unmatched_baseline_buckets)"
        )
        if self.similar:
            seen = (
                f"; models with events: {', '.join(self.similar)}. Is {self.model} a typo of "
                f"{self.similar[0]}?"
            )
        else:
            seen = "."
        return (
            f"baseline {self.model} {self.model_version} matches no model: no event of model "
            f"{self.model} reached this detector {waited}{seen} Publish the baseline under the "
            "model name the events carry (driftwire baseline build --model NAME)"
        )

    def fields(self) -> dict[str, object]:
        return {
            "model": self.model,
            "model_version": self.model_version,
            "similar": list(self.similar),
        }


class BaselineMatcher:
    """Tracks which loaded baselines found their model; one per detector."""

    def __init__(self, *, bucket_ms: int, after_buckets: int) -> None:
        self._bucket_ms = bucket_ms
        self.after_buckets = after_buckets
        self._until: int | None = None  # end of the newest bucket evaluated
        self._since: dict[tuple[str, str], int | None] = {}  # baseline -> _until when first seen
        self._matched: set[str] = set()  # models of baselines that had events here
        self._reported: set[tuple[str, str]] = set()
        self._unmatched: list[tuple[str, str]] = []
        self._new: list[BaselineNotice] = []

    def evaluated(self, bucket_end_ms: int) -> None:
        """A bucket ending at ``bucket_end_ms`` was evaluated (for any model)."""
        if self._until is None or bucket_end_ms > self._until:
            self._until = bucket_end_ms

    def frozen(self, model: str, version: str, baselines: Iterable[tuple[str, str]]) -> None:
        """``model`` ``version`` froze its first window: note similar baselines, if any."""
        keys = list(baselines)
        close = similar_models(model, {m for m, _ in keys})
        if close:
            listed = tuple(f"{m} {v}" for name in close for m, v in sorted(keys) if m == name)
            self._new.append(BaselineNotice("similar", model, version, listed, 0))

    def check(
        self,
        baselines: Iterable[tuple[str, str]],
        live: Iterable[str],
        owns: Callable[[str], bool] = lambda model: True,
        *,
        final: bool = False,
    ) -> None:
        """Compare the loaded ``baselines`` with the models that have events (``live``).

        ``owns(model)`` says whether this detector would see ``model``'s events (its partials
        partition); ``final``: the stream ended, every baseline without events is unmatched.
        """
        live_models = set(live)
        keys = [k for k in baselines if owns(k[0])]
        for gone in set(self._since) - set(keys):
            del self._since[gone]
        unmatched: list[tuple[str, str]] = []
        for key in sorted(keys):
            model = key[0]
            if model in live_models:
                self._matched.add(model)
            since = self._since.get(key)
            if since is None:  # first seen, or seen before any bucket was evaluated
                since = self._since[key] = self._until
            if model in self._matched:
                continue
            waited = 0
            if since is not None and self._until is not None:
                waited = (self._until - since) // self._bucket_ms
            if not final and waited < self.after_buckets:
                continue
            unmatched.append(key)
            if key not in self._reported:
                self._reported.add(key)
                close = tuple(similar_models(model, live_models))
                self._new.append(
                    BaselineNotice("unmatched", key[0], key[1], close, 0 if final else waited)
                )
        self._matched &= {m for m, _ in keys}
        self._unmatched = unmatched

    @property
    def unmatched(self) -> list[tuple[str, str]]:
        """The baselines unmatched at the last :meth:`check` (for a gauge)."""
        return list(self._unmatched)

    def take(self) -> list[BaselineNotice]:
        """The notices since the last call (each reported once)."""
        out, self._new = self._new, []
        return out
