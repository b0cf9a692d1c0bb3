"""Settings of the alerts every emission carries: source, runbook, links, re-sends, silences.

The ``alerts`` section of the config file (composed by :mod:`driftwire.ops.config`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from driftwire._settings import Section as _Section
from driftwire.alerts.silences import Silence, parse_matcher


class SilenceSettings(_Section):
    """A maintenance window: Alertmanager-style matchers on alert labels and a time range."""

    matchers: tuple[str, ...] = Field(min_length=1, description='e.g. model="churn"')
    starts_at: datetime | None = None  # RFC 3339; None: already active
    ends_at: datetime | None = None  # None: until removed from the config
    comment: str = ""

    @model_validator(mode="after")
    def _valid(self) -> SilenceSettings:
        for matcher in self.matchers:
            parse_matcher(matcher)
        for when in (self.starts_at, self.ends_at):
            if when is not None and when.tzinfo is None:
                raise ValueError("starts_at / ends_at need an offset or Z")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def build(self) -> Silence:
        def ms(when: datetime | None) -> int | None:
            return None if when is None else int(when.timestamp() * 1000)

        return Silence.build(
            self.matchers,
            starts_ms=ms(self.starts_at),
            ends_ms=ms(self.ends_at),
            comment=self.comment,
        )


class AlertSettings(_Section):
    """What goes into every alert for the people and tools that act on it."""

    source: str = "driftwire"
    runbook_url: str = "https://github.com/driftwire/driftwire#runbook"
    generator_url_template: str = (
        "http://localhost:3000/d/driftwire-model?var-model={model}&var-version={model_version}"
    )
    generator_url_base: str = Field(
        "",
        description="the worker's HTTP address as alert receivers reach it (as Prometheus' "
        "--web.external-url), e.g. http://driftwire:8080: each alert's generatorURL is then "
        "the drift report of its model, version and window (GET /report) instead of "
        "generator_url_template; empty: the template",
    )
    renotify_seconds: float = Field(0, ge=0)
    silences: tuple[SilenceSettings, ...] = Field(
        (), description="maintenance windows: alerts matching them are not emitted meanwhile"
    )
