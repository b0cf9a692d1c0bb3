"""Silences (maintenance windows): label matchers plus a time range that mute alert emissions.

Matchers use Alertmanager's syntax: ``name="value"``, ``name!="value"``, ``name=~"regex"``,
``name!~"regex"`` (regular expressions are fully anchored, as in Alertmanager; quotes are
optional). A silence applies to an alert when every matcher matches its labels (a label the
alert does not have is the empty string) and the evaluation time (event time: the end of the
window) lies in ``[starts_at, ends_at)``; an open end never expires.

What muting means is decided by :class:`~driftwire.detect.detector.Detector`: the policy keeps
evaluating the condition, only the emission is held back; a condition still firing when the
silence ends is emitted then, and one that resolved while muted is never announced.

>>> s = Silence.build(['model="churn"', 'kind=~"latency_.*"'], starts_ms=0, ends_ms=100)
>>> s.matches({"model": "churn", "kind": "latency_anomaly"}, now_ms=50)
True
>>> s.matches({"model": "churn", "kind": "latency_anomaly"}, now_ms=100)   # expired
False
>>> s.matches({"model": "churn", "kind": "data_drift"}, now_ms=50)
False
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"(.*)"|(\S*))\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher."""

    name: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        have = labels.get(self.name, "")
        if self.pattern is not None:
            hit = self.pattern.fullmatch(have) is not None
            return hit if self.op == "=~" else not hit
        return (have == self.value) if self.op == "=" else (have != self.value)


def parse_matcher(text: str) -> Matcher:
    """Parse ``name="value"`` (``=``, ``!=``, ``=~``, ``!~``); raise ``ValueError`` if bad."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f'bad matcher {text!r}: expected name="value" (=, !=, =~ or !~)')
    name, found, quoted, bare = m.groups()
    value = quoted if quoted is not None else bare
    op: Op = "=~" if found == "=~" else "!~" if found == "!~" else "!=" if found == "!=" else "="
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regular expression in matcher {text!r}: {exc}") from None
    return Matcher(name, op, value, pattern)


@dataclass(frozen=True, slots=True)
class Silence:
    """Matchers (all must match) and a time range ``[starts_ms, ends_ms)``."""

    matchers: tuple[Matcher, ...]
    starts_ms: int | None = None
    ends_ms: int | None = None
    comment: str = ""

    @classmethod
    def build(
        cls,
        matchers: list[str] | tuple[str, ...],
        *,
        starts_ms: int | None = None,
        ends_ms: int | None = None,
        comment: str = "",
    ) -> Silence:
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        return cls(tuple(parse_matcher(m) for m in matchers), starts_ms, ends_ms, comment)

    @property
    def id(self) -> str:
        """A stable id (hash of the matchers and range), for the evidence of what muted."""
        raw = "\x00".join(
            [*(f"{m.name}{m.op}{m.value}" for m in self.matchers), str(self.starts_ms)]
        )
        return hashlib.sha256(f"{raw}\x00{self.ends_ms}".encode()).hexdigest()[:12]

    def active(self, now_ms: int) -> bool:
        return (self.starts_ms is None or now_ms >= self.starts_ms) and (
            self.ends_ms is None or now_ms < self.ends_ms
        )

    def matches(self, labels: dict[str, str], now_ms: int) -> bool:
        return self.active(now_ms) and all(m.matches(labels) for m in self.matchers)


def silenced_by(silences: tuple[Silence, ...], labels: dict[str, str], now_ms: int) -> str | None:
    """The id of the first silence that mutes ``labels`` at ``now_ms``, else ``None``."""
    for silence in silences:
        if silence.matches(labels, now_ms):
            return silence.id
    return None
