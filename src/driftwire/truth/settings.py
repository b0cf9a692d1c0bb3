"""Settings of the ground-truth stage: the ``truth`` section of the config file.

Composed by :mod:`driftwire.ops.config`; the pure core takes plain values
(:meth:`TruthSettings.tracker_settings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from driftwire._settings import Section as _Section

if TYPE_CHECKING:
    from driftwire.truth.tracker import TrackerSettings


class TruthSettings(_Section):
    """Joining labels to predictions and judging realized performance."""

    enabled: bool = False  # run the truth stage in `driftwire worker` (stage all)
    group_id: str = Field("driftwire-truth", min_length=1)
    horizon_seconds: float = Field(7 * 86_400.0, gt=0)
    bucket_seconds: float = Field(60.0, gt=0)
    window_seconds: float = Field(3_600.0, gt=0)
    evaluation_delay_seconds: float = Field(0.0, ge=0)
    #: judge each window again this long after it ends (on every label joined by then), and
    #: at the horizon; ages at or below the evaluation delay or past the horizon are left out;
    #: [] judges a window once
    rejudge_after_seconds: tuple[float, ...] = Field(
        (3_600.0, 21_600.0, 86_400.0, 259_200.0), max_length=12
    )
    sample_fraction: float = Field(1.0, gt=0, le=1)
    max_pending: int = Field(1_000_000, ge=1)
    score_threshold: float = Field(0.5, ge=0, le=1)
    reference_count: int = Field(2_000, ge=1)
    min_count: int = Field(100, ge=1)
    alpha: float = Field(0.001, gt=0, lt=1)
    #: how long the stage waits at start to read the baselines topic to its end
    baselines_wait_seconds: float = Field(60.0, ge=0)

    @field_validator("rejudge_after_seconds")
    @classmethod
    def _positive_ages(cls, ages: tuple[float, ...]) -> tuple[float, ...]:
        bad = [a for a in ages if not a > 0]
        if bad:
            raise ValueError(f"ages must be > 0 seconds after the window's end, got {bad}")
        return ages

    def tracker_settings(self) -> TrackerSettings:
        """The pure tracker's settings (milliseconds, the rule)."""
        from driftwire.truth.compare import PerformanceRule
        from driftwire.truth.tracker import TrackerSettings

        return TrackerSettings(
            bucket_ms=round(self.bucket_seconds * 1000),
            window_ms=round(self.window_seconds * 1000),
            horizon_ms=round(self.horizon_seconds * 1000),
            evaluation_delay_ms=round(self.evaluation_delay_seconds * 1000),
            rejudge_ms=tuple(round(a * 1000) for a in self.rejudge_after_seconds),
            sample_fraction=self.sample_fraction,
            max_pending=self.max_pending,
            threshold=self.score_threshold,
            reference_count=self.reference_count,
            rule=PerformanceRule(alpha=self.alpha, min_count=self.min_count),
        )
