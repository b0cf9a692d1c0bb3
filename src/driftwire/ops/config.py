"""Settings: one YAML file plus ``DRIFTWIRE_*`` environment overrides, validated at start.

Every key lives in a section (``kafka``, ``topics``, ``consumer``, ``profile``, ``detect``,
``alerts``, ``http``, ``log``, ``bridges``). An environment variable ``DRIFTWIRE_<SECTION>_<KEY>``
overrides ``<section>.<key>`` (``DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS`` sets
``kafka.bootstrap_servers``). Secrets may come from files: ``DRIFTWIRE_KAFKA_SASL_PASSWORD_FILE``.
An unknown key, a wrong type or a missing required value raises :class:`ConfigError` naming
the key and what is expected.

>>> s = load_settings(None, env={"DRIFTWIRE_TOPICS_EVENTS": "inference"})
>>> s.topics.events, s.topics.dead_letter_topic
('inference', 'inference.dlq')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from driftwire.alerts.silences import Silence, parse_matcher
from driftwire.errors import ConfigError

ENV_PREFIX = "DRIFTWIRE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class KafkaSettings(_Section):
    """How to reach the broker. Never logged: it may hold credentials."""

    bootstrap_servers: str = Field("localhost:9092", description="host:port[,host:port]")
    client_id: str = "driftwire"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password"
            )
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return options


class TopicSettings(_Section):
    """Topic names. ``dead_letter`` defaults to ``<events>.dlq``."""

    events: str = Field("inference-events", min_length=1)
    dead_letter: str | None = None
    partials: str = Field("driftwire-partials", min_length=1)
    alerts: str = Field("driftwire-alerts", min_length=1)
    baselines: str = Field("driftwire-baselines", min_length=1)
    create: bool = True  # create the topics driftwire writes (not the input) when missing
    partials_partitions: int = Field(6, ge=1)  # the most detect workers that can share work
    replication_factor: int | None = Field(None, ge=1)  # None: min(3, brokers)

    @property
    def dead_letter_topic(self) -> str:
        return self.dead_letter or f"{self.events}.dlq"


class ConsumerSettings(_Section):
    """The profile stage's consumer-group membership and batching."""

    group_id: str = Field("driftwire-profile", min_length=1)
    max_batch_records: int = Field(2000, ge=1, le=100_000)
    fetch_timeout_ms: int = Field(500, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    session_timeout_ms: int = Field(30_000, ge=1000)


class ProfileSettings(_Section):
    """Decoding limits, event-time buckets and cardinality caps of the profile stage."""

    bucket_seconds: float = Field(60.0, gt=0)
    allowed_lateness_seconds: float = Field(30.0, ge=0)
    max_future_seconds: float = Field(300.0, gt=0)
    idle_partition_seconds: float = Field(30.0, gt=0)
    max_event_bytes: int = Field(65_536, ge=256)
    max_features: int = Field(500, ge=1)
    max_segments: int = Field(200, ge=1)


class LatencySettings(_Section):
    """Latency anomalies per (model, version, segment): spikes against the reference and creep.

    See :mod:`driftwire.detect.latency` for the statistics and the choice of parameters.
    """

    enabled: bool = True
    quantiles: tuple[float, ...] = Field(
        (0.5, 0.95, 0.99), description="window percentiles computed, exported and alerted on"
    )
    spike_factor: tuple[float, float] = Field(
        (3.0, 10.0), description="[warning, critical]: window percentile / reference percentile"
    )
    slo_ms: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="optional absolute SLOs, e.g. {p99: [250, 1000]} (warning, critical ms)",
    )
    min_tail_events: int = Field(
        5, ge=1, description="a percentile q is judged only with >= this many events above it"
    )
    creep: bool = True
    creep_delta: float = Field(0.05, ge=0, description="Page-Hinkley delta (log of p95)")
    creep_threshold: float = Field(1.5, gt=0, description="Page-Hinkley lambda (log of p95)")
    creep_min_buckets: int = Field(10, ge=1, description="buckets before creep can fire")
    creep_min_bucket_count: int = Field(
        50, ge=1, description="a bucket with fewer latencies is left out of the p95 series"
    )
    creep_min_ratio: float = Field(
        1.2, gt=1, description="creep fires only while window p95 / reference p95 >= this"
    )
    creep_resolve_ratio: float = Field(
        1.1, ge=1, description="a creep alert resolves when the ratio falls below this"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LatencySettings:
        if not self.quantiles or not all(0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles must be a non-empty list of numbers in (0, 1)")
        names = {f"p{q * 100:g}" for q in self.quantiles}
        for key, (warning, critical) in {**self.slo_ms, "spike_factor": self.spike_factor}.items():
            if key != "spike_factor" and key not in names:
                raise ValueError(f"slo_ms: {key!r} is not one of the quantiles {sorted(names)}")
            if not 0 < warning <= critical:
                raise ValueError(f"{key}: need 0 < warning <= critical, got {warning}, {critical}")
        if self.creep_resolve_ratio >= self.creep_min_ratio:
            raise ValueError("creep_resolve_ratio must be below creep_min_ratio")
        return self


class QualitySettings(_Section):
    """Data-quality checks per (model, version, segment, feature), separate from drift.

    See :mod:`driftwire.detect.quality` for the statistics and the default thresholds.
    """

    enabled: bool = True
    z: float = Field(
        4.0, gt=0, description="one-sided z a rate increase must reach at these sample sizes"
    )
    thresholds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="{statistic: [warning, critical]} overrides (missing_rate, wrong_type, "
        "non_finite, unseen_share, feature_added, feature_removed)",
    )


class ThroughputSettings(_Section):
    """Event-rate alerts per (model, version). See :mod:`driftwire.detect.throughput`."""

    enabled: bool = True
    no_data_buckets: int = Field(
        3, ge=0, description="silent buckets (while other traffic flows) before 'no data'; 0: off"
    )
    rate_drop: tuple[float, float] | None = Field(
        (5.0, 20.0), description="[warning, critical] factor below the trailing rate; null: off"
    )
    rate_jump: tuple[float, float] | None = Field(
        (5.0, 20.0), description="[warning, critical] factor above the trailing rate; null: off"
    )
    reference_buckets: int = Field(
        60, ge=2, description="trailing buckets (before the window) the rate is compared with"
    )


class CanarySettings(_Section):
    """A newer live version against the one it replaces, same window
    (:mod:`driftwire.detect.canary`)."""

    enabled: bool = True
    thresholds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="{statistic: [warning, critical]} for the prediction comparison; default: "
        "detect.thresholds, then the statistic's defaults",
    )
    latency_factor: tuple[float, float] | None = Field(
        (2.0, 5.0),
        description="[warning, critical]: canary percentile / previous version's; null: off",
    )

    @model_validator(mode="after")
    def _ordered(self) -> CanarySettings:
        for key, (warning, critical) in {
            **self.thresholds,
            "latency_factor": self.latency_factor or (1.0, 1.0),
        }.items():
            if not 0 < warning <= critical:
                raise ValueError(f"{key}: need 0 < warning <= critical, got {warning}, {critical}")
        return self


ReferenceKind = Literal["baseline", "trailing_window", "seasonal"]
_PERIOD_MS = {"day": 86_400_000, "week": 7 * 86_400_000}


class ReferenceSettings(_Section):
    """What each model, or feature, is compared with. See :mod:`driftwire.detect.trailing`.

    ``baseline``: the published baseline, else the version's first complete window, frozen.
    ``trailing_window``: the previous ``trailing_hours`` of the version's own traffic.
    ``seasonal``: the same slot of the period (hour of the week by default) over the last
    ``seasonal_periods`` periods. Both are built from slot profiles of ``slot_minutes`` and
    fall back to ``baseline`` until they have ``min_reference_count`` events (and, seasonal,
    one past period).
    """

    default: ReferenceKind = "baseline"
    overrides: dict[str, ReferenceKind] = Field(
        default_factory=dict,
        description='per model or model/feature, e.g. {churn: seasonal, "churn/age": baseline}',
    )
    trailing_hours: float = Field(24.0, gt=0, description="span of a trailing_window reference")
    seasonal_period: Literal["week", "day"] = "week"
    seasonal_periods: int = Field(4, ge=1, le=52, description="past periods merged (seasonal)")
    slot_minutes: float = Field(60.0, gt=0, description="slot profiles kept per segment")

    def kind(self, model: str, feature: str | None = None) -> ReferenceKind:
        """The reference kind of ``model`` (or of one of its features)."""
        found = self.overrides.get(f"{model}/{feature}") if feature is not None else None
        return found or self.overrides.get(model) or self.default

    def kinds(self, model: str) -> set[ReferenceKind]:
        """Every reference kind ``model`` or one of its features uses."""
        prefix = f"{model}/"
        found = {k for key, k in self.overrides.items() if key.startswith(prefix)}
        return found | {self.kind(model)}

    @property
    def slot_ms(self) -> int:
        return round(self.slot_minutes * 60_000)

    @property
    def period_ms(self) -> int:
        return _PERIOD_MS[self.seasonal_period]

    def check(self, bucket_ms: int) -> None:
        """Refuse slots that do not tile buckets and periods (needs ``profile.bucket_seconds``)."""
        key = "detect.references.slot_minutes"
        slot = self.slot_ms
        if slot % bucket_ms:
            raise ConfigError(
                key,
                f"{self.slot_minutes:g} min is not a whole number of "
                f"{bucket_ms / 1000:g} s buckets (profile.bucket_seconds)",
                "use a multiple of the bucket, e.g. 60",
            )
        if self.period_ms % slot:
            raise ConfigError(
                key,
                f"{self.slot_minutes:g} min does not divide a {self.seasonal_period}",
                "use a divisor of 1440 min (a day), e.g. 60",
            )
        if self.trailing_hours * 3_600_000 < slot:
            raise ConfigError(
                "detect.references.trailing_hours",
                f"{self.trailing_hours:g} h is shorter than one {self.slot_minutes:g} min slot",
                "make it at least slot_minutes / 60",
            )
        for name in self.overrides:
            if not name or name.startswith("/") or name.endswith("/"):
                raise ConfigError(
                    f"detect.references.overrides.{name}",
                    "a key is a model name or model/feature",
                    'e.g. churn or "churn/age"',
                )


class DetectSettings(_Section):
    """Windows, references and thresholds of the detection stage.

    ``references`` chooses the reference per model and feature. Trailing and seasonal
    references keep slot profiles, the largest state of the stage: per model version,
    ``slots x segments x profile bytes``, where slots = ``seasonal_periods`` x period /
    ``slot_minutes`` (seasonal: 4 weeks of hours = 672) or ``trailing_hours`` x 60 /
    ``slot_minutes`` (24), and a profile is about 2.3 KB per numeric feature (10 numeric
    features x 9 segments x 672 slots ≈ 140 MB), in memory and in the state changelog. Only
    models that use them keep slots, and only as far back as they reach.
    """

    window_buckets: int = Field(5, ge=1)
    min_count: int = Field(200, ge=1)
    min_reference_count: int = Field(1000, ge=1)
    grace_seconds: float = Field(10.0, ge=0)
    consecutive_windows: int = Field(2, ge=1)
    segments: bool = True
    statistics: dict[str, list[str]] = Field(
        default_factory=lambda: {"numeric": ["psi"], "categorical": ["psi"]},
        description="statistics computed and alerted on, per feature kind",
    )
    data_dir: str | None = None  # faust's local files; default: <tmp>/driftwire/<app id>

    @model_validator(mode="after")
    def _kinds_known(self) -> DetectSettings:
        unknown = set(self.statistics) - {"numeric", "categorical"}
        if unknown:
            raise ValueError(f"statistics: unknown feature kind {sorted(unknown)[0]!r}")
        return self

    thresholds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    features: dict[str, dict[str, Any]] = Field(default_factory=dict)
    latency: LatencySettings = LatencySettings()
    quality: QualitySettings = QualitySettings()
    throughput: ThroughputSettings = ThroughputSettings()
    references: ReferenceSettings = ReferenceSettings()
    group_min_features: int = Field(
        3,
        ge=0,
        description="features of one model version breaching (drift or data quality) in one "
        "window that make one upstream_change incident instead of separate alerts; 0: off",
    )
    group_min_segments: int = Field(
        0, ge=0, description="segments breaching at once that make an incident too; 0: off"
    )
    canary: CanarySettings = CanarySettings()
    retire_after_buckets: int = Field(
        1440,
        ge=0,
        description="a version without events for this many buckets while other versions of "
        "its model send is forgotten (state, conditions, gauges); 0: never",
    )


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
    renotify_seconds: float = Field(0, ge=0)
    silences: tuple[SilenceSettings, ...] = Field(
        (), description="maintenance windows: alerts matching them are not emitted meanwhile"
    )


BridgeTarget = Literal["alertmanager", "pagerduty", "slack", "webhook"]
PagerDutySeverity = Literal["critical", "error", "warning", "info"]


def _pagerduty_severities() -> dict[str, PagerDutySeverity]:
    return {"critical": "critical", "warning": "warning"}


class BridgeRoute(_Section):
    """Which alerts one bridge target receives: those whose labels match every list given."""

    severities: tuple[Literal["warning", "critical"], ...] = Field(
        (), description="e.g. [critical]; empty: every severity"
    )
    kinds: tuple[str, ...] = Field((), description="e.g. [data_drift, data_quality]; empty: all")


class BridgeSettings(_Section):
    """``driftwire bridge TARGET``: the alerts topic to Alertmanager, PagerDuty, Slack, a webhook.

    Each target is its own consumer group (``<group_id_prefix>-<target>``), so every target
    sees every alert; ``routes`` narrows what a target receives. Secrets (the PagerDuty
    routing key, the Slack webhook URL, webhook headers) are never logged; set them with
    ``DRIFTWIRE_BRIDGES_<KEY>_FILE`` to read them from files.
    """

    group_id_prefix: str = Field("driftwire-bridge", min_length=1)
    http_port: int = Field(
        9465,
        ge=0,
        le=65535,
        description="/metrics, /healthz, /readyz of the bridge, on http.host (the worker has "
        "http.port, 9464); one port per bridge process on a host",
    )
    dead_letter: str | None = Field(
        None, description="undeliverable alerts go here; default <topics.alerts>.dlq"
    )
    routes: dict[BridgeTarget, BridgeRoute] = Field(
        default_factory=dict,
        description="per target, e.g. {pagerduty: {severities: [critical]}}; none: everything",
    )
    max_attempts: int = Field(5, ge=1, le=50, description="HTTP attempts per alert (5xx, timeout)")
    backoff_initial_seconds: float = Field(0.5, gt=0, description="first retry delay, doubled")
    backoff_max_seconds: float = Field(30.0, gt=0, description="longest retry delay")
    request_timeout_seconds: float = Field(10.0, gt=0, description="one HTTP request")
    alertmanager_url: str = Field(
        "http://localhost:9093", description="Alertmanager base URL (POST /api/v2/alerts)"
    )
    alertmanager_resend_seconds: float = Field(
        60.0, gt=0, description="firing alerts are re-sent this often (endsAt = 4x ahead)"
    )
    pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue", description="Events API v2 endpoint"
    )
    pagerduty_routing_key: str | None = Field(
        None, repr=False, description="the integration key of the PagerDuty service (secret)"
    )
    pagerduty_severity: dict[str, PagerDutySeverity] = Field(
        default_factory=_pagerduty_severities,
        description="driftwire severity -> payload.severity; anything else is info",
    )
    slack_webhook_url: str | None = Field(
        None, repr=False, description="a Slack incoming-webhook URL (secret)"
    )
    webhook_url: str | None = Field(None, description="generic webhook: the CloudEvent POSTed")
    webhook_headers: dict[str, str] = Field(
        default_factory=dict, repr=False, description="extra headers, e.g. Authorization"
    )


class HttpSettings(_Section):
    """The metrics and health endpoint (``/metrics``, ``/healthz``, ``/readyz``)."""

    host: str = "0.0.0.0"
    port: int = Field(9464, ge=0, le=65535)
    liveness_timeout_seconds: float = Field(300.0, gt=0)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Section):
    """All settings of a driftwire process."""

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    profile: ProfileSettings = ProfileSettings()
    detect: DetectSettings = DetectSettings()
    alerts: AlertSettings = AlertSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    bridges: BridgeSettings = BridgeSettings()

    @model_validator(mode="after")
    def _slots_tile_buckets(self) -> Settings:
        self.detect.references.check(round(self.profile.bucket_seconds * 1000))
        return self


_SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
}


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Map ``DRIFTWIRE_<SECTION>_<KEY>[_FILE]`` variables onto the settings tree."""
    tree: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # DRIFTWIRE_CONFIG and the like are not settings
        key = rest[len(section) + 1 :]
        value: Any = raw
        if key.endswith("_file") and key[:-5] in _SECTIONS[section].model_fields:
            key = key[:-5]
            try:
                value = Path(raw).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{section}.{key}", f"cannot read {name}={raw}: {exc}") from exc
        elif key in _SECTIONS[section].model_fields and raw.strip()[:1] in "{[":
            value = yaml.safe_load(raw)
        if key not in _SECTIONS[section].model_fields:
            known = ", ".join(sorted(_SECTIONS[section].model_fields))
            raise ConfigError(f"{section}.{key}", f"unknown key set by {name}", f"known: {known}")
        tree.setdefault(section, {})[key] = value
    return tree


def _describe(error: Any) -> ConfigError:
    key = ".".join(str(p) for p in error["loc"]) or "<root>"
    kind = error["type"]
    if kind == "extra_forbidden":
        model: Any = Settings
        for part in error["loc"][:-1]:
            if isinstance(model, type) and issubclass(model, BaseModel):
                field = model.model_fields.get(str(part))
                model = field.annotation if field is not None else None
            else:  # inside a dict, tuple or list of sections: step to the section type
                model = next((a for a in get_args(model) if isinstance(a, type)), None)
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        known = ", ".join(sorted(model.model_fields)) if is_model else ""
        return ConfigError(key, "unknown key", f"known keys here: {known}")
    expected = error.get("msg", kind)
    given = error.get("input")
    if isinstance(given, Mapping | list) or "password" in key:
        return ConfigError(key, expected)  # never echo a section: it may hold secrets
    return ConfigError(key, f"{expected}; got {given!r}")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (YAML; ``None`` for defaults), apply environment overrides, validate."""
    env = os.environ if env is None else env
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError("<file>", f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError("<file>", f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("<root>", f"{path} must hold a mapping of sections")
    data = _merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc.errors()[0]) from None
