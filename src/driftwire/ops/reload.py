"""Hot reload of the config file: silences, thresholds and per-feature overrides, live.

On SIGHUP, or when the config file changes (polled), the worker reads the file again with the
environment overrides, validates it, and compares it with the running settings
(:func:`diff_settings`, pure). The keys of :data:`LIVE_KEYS` take their new values at once
(thresholds from the next evaluated window, silences from the next decision); every other
changed key -- topics, bootstrap servers, windows, buckets -- keeps its running value and is
reported as needing a restart. One log line says what changed; a file that does not load or
validate keeps the running config, and one line says why. ``driftwire_config_info{hash}``
carries the hash of the running settings (:func:`config_hash`).

>>> from driftwire.ops.config import load_settings
>>> old = load_settings(None, env={})
>>> new = load_settings(None, env={"DRIFTWIRE_DETECT_THRESHOLDS": "{psi: [0.2, 0.4]}",
...                                "DRIFTWIRE_TOPICS_ALERTS": "other"})
>>> d = diff_settings(old, new)
>>> [c.key for c in d.live], [c.key for c in d.restart]
(['detect.thresholds.psi'], ['topics.alerts'])
>>> running = d.apply(old, new)
>>> running.detect.thresholds["psi"], running.topics.alerts
((0.2, 0.4), 'driftwire-alerts')
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from driftwire.errors import ConfigError
from driftwire.ops.config import Settings, load_settings

__all__ = [
    "LIVE_KEYS",
    "Change",
    "ConfigReloader",
    "SettingsDiff",
    "config_hash",
    "diff_settings",
]

log = logging.getLogger(__name__)

#: The settings that change live; any other key needs a restart.
LIVE_KEYS: tuple[str, ...] = (
    "alerts.silences",
    "alerts.renotify_seconds",
    "detect.thresholds",
    "detect.features",
    "detect.min_effect",
    "detect.critical_effect",
    "detect.quality.thresholds",
    "detect.canary.thresholds",
    "detect.canary.latency_factor",
    "detect.latency.spike_factor",
    "detect.latency.slo_ms",
    "detect.throughput.rate_drop",
    "detect.throughput.rate_jump",
)
_SECRET_WORDS = ("password", "routing_key", "webhook_url", "webhook_headers")
_MISSING = object()


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys of a settings dump; a list (a silence list) is one leaf, an empty
    mapping none."""
    if isinstance(tree, Mapping) and (tree or prefix):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _show(key: str, value: Any) -> str:
    if value is _MISSING:
        return "(unset)"
    if any(word in key for word in _SECRET_WORDS) or isinstance(value, SecretStr):
        return "***"
    if isinstance(value, list | tuple) and key.endswith("silences"):
        return f"{len(value)} silence{'s' * (len(value) != 1)}"
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def _is_live(key: str) -> bool:
    return any(key == live or key.startswith(live + ".") for live in LIVE_KEYS)


@dataclass(frozen=True)
class Change:
    """One changed setting: its dotted key and both values."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} {_show(self.key, self.old)} -> {_show(self.key, self.new)}"


@dataclass(frozen=True)
class SettingsDiff:
    """What differs between the running settings and a newly read file."""

    live: tuple[Change, ...]
    restart: tuple[Change, ...]

    def __bool__(self) -> bool:
        return bool(self.live or self.restart)

    def apply(self, running: Settings, new: Settings) -> Settings:
        """``running`` with the live keys of ``new``: what the worker runs after the reload."""
        # python mode: secrets stay SecretStr (a JSON dump would mask them for good)
        merged = running.model_dump()
        fresh = new.model_dump()
        for key in LIVE_KEYS:
            *path, leaf = key.split(".")
            src, dst = fresh, merged
            for part in path:
                src, dst = src[part], dst[part]
            dst[leaf] = src[leaf]
        return Settings.model_validate(merged)

    def describe(self) -> str:
        """One line: what applies now and what waits for a restart."""
        parts = []
        if self.live:
            parts.append("applied: " + "; ".join(map(str, self.live)))
        if self.restart:
            parts.append(
                "needs a restart (the running value is kept): " + "; ".join(map(str, self.restart))
            )
        return " | ".join(parts)


def diff_settings(running: Settings, new: Settings) -> SettingsDiff:
    """Every changed leaf key, split into live and needs-a-restart. Pure."""
    old = _flat(running.model_dump())  # SecretStr compares its secret: a change is seen
    fresh = _flat(new.model_dump())
    live: list[Change] = []
    restart: list[Change] = []
    for key in sorted(old.keys() | fresh.keys()):
        a, b = old.get(key, _MISSING), fresh.get(key, _MISSING)
        if a == b:
            continue
        (live if _is_live(key) else restart).append(Change(key, a, b))
    return SettingsDiff(tuple(live), tuple(restart))


def config_hash(settings: Settings) -> str:
    """A short hash of the effective settings (12 hex digits): equal settings, equal hash."""
    raw = orjson.dumps(settings.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:12]


class ConfigReloader:
    """Reads the config file again on :meth:`reload` (SIGHUP) or when :meth:`watch` sees it
    change, and hands the new running settings to ``apply``.

    ``on_hash(hash, result)`` is told the running config's hash after every attempt and its
    result: ``applied`` (live keys changed), ``restart_needed`` (only keys that need a
    restart changed), ``unchanged``, or ``rejected`` (the file did not load; the running
    config is kept).
    """

    def __init__(
        self,
        path: str | Path,
        running: Settings,
        apply: Callable[[Settings], None],
        *,
        on_hash: Callable[[str, str], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.running = running
        self._apply = apply
        self._on_hash = on_hash or (lambda _hash, _result: None)
        self._env = env
        self._stamp = self._file_stamp()

    @property
    def hash(self) -> str:
        return config_hash(self.running)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self, trigger: str) -> str:
        """Read, validate, diff and apply the file now; returns the result (see the class)."""
        self._stamp = self._file_stamp()
        try:
            new = load_settings(self.path, env=self._env)
        except ConfigError as exc:
            why = " ".join(str(exc).split())  # one line, a YAML error's context included
            log.error(
                f"config reload ({trigger}) rejected, the running config is kept: {why}",
                extra={"fields": {"path": str(self.path), "hash": self.hash}},
            )
            self._on_hash(self.hash, "rejected")
            return "rejected"
        diff = diff_settings(self.running, new)
        if not diff:
            log.info(
                f"config reload ({trigger}): nothing changed",
                extra={"fields": {"hash": self.hash}},
            )
            self._on_hash(self.hash, "unchanged")
            return "unchanged"
        before = self.hash
        if diff.live:
            self.running = diff.apply(self.running, new)
            self._apply(self.running)
        result = "applied" if diff.live else "restart_needed"
        line = f"config reloaded ({trigger}): {diff.describe()}"
        fields = {"hash": self.hash, "previous_hash": before, "path": str(self.path)}
        if diff.restart:
            log.warning(line, extra={"fields": fields})
        else:
            log.info(line, extra={"fields": fields})
        self._on_hash(self.hash, result)
        return result

    async def watch(self, stop: asyncio.Event, *, interval_s: float = 2.0) -> None:
        """Reload whenever the file's modification time, size or inode change, until ``stop``
        (a Kubernetes ConfigMap update swaps a symlink: a new inode)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            if stop.is_set():
                return
            stamp = self._file_stamp()
            if stamp is not None and stamp != self._stamp:
                try:
                    self.reload("file changed")
                except Exception:  # a failure to apply must not end the watching
                    log.exception("config reload (file changed) failed")
