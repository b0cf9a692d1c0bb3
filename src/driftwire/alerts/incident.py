"""An ``upstream_change`` incident's membership: who it announced, who joined and left, who it had.

An incident (:mod:`driftwire.alerts.grouping`) holds back its members' own alerts while it
fires, so it must itself announce every member: it carries its *current* membership. A
member is a grouped condition (data drift or data quality of one feature in one segment) of
the incident's model version. When the incident fires, its members are the conditions
breaching or firing in that window. While it fires, a condition *joins* when its own policy
state fires (K consecutive breaching windows, so that one noisy window does not change the
incident) and a member *leaves* when it neither breaches nor fires any more (its own policy
resolved it, with its hysteresis). Any change re-sends the incident: the same labels, so the
same fingerprint, with the updated members, evidence and summary, as Alertmanager re-notifies
a group whose alerts changed. Its resolution lists every member it ever had.

>>> m = Membership()
>>> m.start({"m/a": {"feature": "a"}, "m/b": {"feature": "b"}})
>>> m.follow({"m/a": {"feature": "a"}, "m/c": {"feature": "c"}}, firing={"m/a", "m/c"})
True
>>> sorted(m.members), sorted(m.ever), m.joined, m.left
(['m/a', 'm/c'], ['m/a', 'm/b', 'm/c'], ['m/c'], ['m/b'])
>>> m.follow({"m/a": {"feature": "a"}, "m/c": {"feature": "c"}}, firing={"m/a"})
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from driftwire.alerts.alert import fingerprint
from driftwire.alerts.finding import Finding

MAX_MEMBERS = 50  # listed in the evidence; the counts cover all
MAX_NAMED = 5  # joined / left members named in the summary

Entry = dict[str, Any]


def member_entry(f: Finding, severity: str | None) -> Entry:
    """How an incident lists one member condition (``severity``: its firing one, if any)."""
    level = severity or f.level or "warning"
    return {
        "kind": f.kind,
        "feature": f.labels.get("feature", ""),
        "segment": f.labels["segment"],
        "statistic": f.labels["statistic"],
        "value": f.reported,
        "threshold": f.threshold(level),
        "severity": level,
        "fingerprint": fingerprint({**f.labels, "severity": level}),
    }


def _excess(entry: Entry) -> float:
    value, threshold = entry.get("value"), entry.get("threshold")
    if value is None:
        return 0.0
    if not threshold or not math.isfinite(threshold):
        return math.inf
    return float(value) / float(threshold)


def ranked(entries: list[Entry]) -> list[Entry]:
    """Entries sorted by how far each is past its threshold, then by feature."""
    return sorted(entries, key=lambda e: (-_excess(e), e.get("feature", ""), e.get("segment", "")))


def name(entry: Entry) -> str:
    """``feature@segment statistic``: how a member is named in a summary."""
    return f"{entry.get('feature', '')}@{entry.get('segment', '')} {entry.get('statistic', '')}"


@dataclass
class Membership:
    """Members (condition key -> entry) of one incident, persisted with the model's state."""

    members: dict[str, Entry] = field(default_factory=dict)  # announced and current
    ever: dict[str, Entry] = field(default_factory=dict)  # every member it had
    joined: list[str] = field(default_factory=list)  # this window's changes (not persisted)
    left: list[str] = field(default_factory=list)
    gone: dict[str, Entry] = field(default_factory=dict)  # entries of ``left``

    def start(self, current: dict[str, Entry]) -> None:
        """The incident fires (again): its members are the conditions breaching or firing."""
        self.members = dict(current)
        self.ever.update(current)
        self.joined, self.left, self.gone = [], [], {}

    def follow(self, current: dict[str, Entry], *, firing: set[str]) -> bool:
        """One more window while the incident fires; ``True`` when its membership changed.

        ``current``: entries of the grouped conditions breaching or firing now; ``firing``:
        the keys among them whose own alert fires.
        """
        self.joined = sorted(k for k in firing if k not in self.members and k in current)
        self.left = sorted(k for k in self.members if k not in current)
        self.gone = {k: self.members.pop(k) for k in self.left}
        for k in list(self.members) + self.joined:
            self.members[k] = current[k]
        self.ever.update(self.members)
        return bool(self.joined or self.left)

    def to_state(self) -> dict[str, Any]:
        return {"members": self.members, "ever": self.ever}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Membership:
        return cls(members=dict(state.get("members", {})), ever=dict(state.get("ever", {})))


def incident_finding(g: Finding, m: Membership, *, resolved: bool = False) -> Finding:
    """The incident ``g`` as its alert announces it: with ``m``'s members (every member it
    had when ``resolved``), the members that joined or left, and a summary that says so."""
    listed = ranked(list((m.ever if resolved else m.members).values()))
    features: dict[str, int] = {}
    for e in listed:
        features[e["feature"]] = features.get(e["feature"], 0) + 1
    features = dict(sorted(features.items()))
    segments = sorted({e["segment"] for e in listed if e["segment"] != "all"})
    who = f"{g.labels['model']} {g.labels['model_version']}"
    nf, ns, n = len(features), len(segments), len(listed)
    joined = [m.members[k] for k in m.joined if k in m.members]
    left = list(m.gone.values())

    def names(entries: list[Entry]) -> str:
        text = ", ".join(name(e) for e in entries[:MAX_NAMED])
        more = len(entries) - MAX_NAMED
        return f"{text} (+{more} more)" if more > 0 else text

    changes = "; ".join(
        f"{what}: {names(entries)}"
        for what, entries in (("joined", joined), ("left", left))
        if entries
    )

    def headline(status: str, threshold: float) -> str:
        if status == "firing":
            text = g.headline(status, threshold)
            text = (
                f"upstream change suspected for {who}: {nf} features breach at once in "
                f"{ns} segments ({n} conditions)"
                if joined or left
                else text
            )
            return f"{text}; {changes}" if changes else text
        every = ", ".join(sorted(features))
        return (
            f"upstream change of {who} over: it had {n} conditions of {nf} features in "
            f"{ns} segments ({every[:300]})"
        )

    evidence = {
        **g.evidence,
        "members": listed[:MAX_MEMBERS],
        "member_count": n,
        "features": features,
        "segments": segments,
    }
    if joined or left:
        evidence["joined"] = joined[:MAX_MEMBERS]
        evidence["left"] = left[:MAX_MEMBERS]
    description = (
        f"{g.description} The incident is re-sent, with the same fingerprint, when members "
        "join or leave while it fires; its resolution lists every member it had."
    )
    if resolved:
        description += " The members listed are every member it had."
    return replace(g, headline=headline, evidence=evidence, description=description)
