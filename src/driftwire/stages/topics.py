"""The topics the worker writes: see :mod:`driftwire.ops.topics` (shared with the bridges and
``baseline build --publish``, which write topics too)."""

from __future__ import annotations

from driftwire.ops.topics import ensure_topics, worker_specs

__all__ = ["ensure_topics", "worker_specs"]
