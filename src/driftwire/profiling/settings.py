"""Settings of stage 1: decoding limits, event-time buckets and cardinality caps.

The ``profile`` section of the config file (composed by :mod:`driftwire.ops.config`). The stage-1
core itself takes plain values; the shells read them from here
(:func:`driftwire.stages.profile_core.profile_core`).
"""

from __future__ import annotations

from pydantic import Field

from driftwire._settings import Section as _Section


class ProfileSettings(_Section):
    """Decoding limits, event-time buckets and cardinality caps of the profile stage."""

    bucket_seconds: float = Field(60.0, gt=0)
    allowed_lateness_seconds: float = Field(30.0, ge=0)
    max_future_seconds: float = Field(300.0, gt=0)
    idle_partition_seconds: float = Field(30.0, gt=0)
    max_event_bytes: int = Field(65_536, ge=256)
    max_features: int = Field(500, ge=1)
    max_segments: int = Field(200, ge=1)
    max_versions: int = Field(20, ge=1, description="versions per model; more fold into __other__")
    max_models: int = Field(1_000, ge=1, description="models per worker; more are dropped")
