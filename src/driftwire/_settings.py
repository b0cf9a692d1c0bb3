"""The base of every settings section: frozen, keyword-only, unknown keys refused.

The core's rooms declare their own sections (``profiling.settings``, ``detect.settings``,
``alerts.settings``); the config file loader (``ops.config``) composes them into one
:class:`~driftwire.ops.config.Settings`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A settings section: immutable, and a typo in a key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
