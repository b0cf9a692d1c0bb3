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
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from driftwire._settings import Section as _Section
from driftwire.alerts.settings import AlertSettings, SilenceSettings
from driftwire.detect.settings import (
    CanarySettings,
    DetectSettings,
    LatencySettings,
    QualitySettings,
    ReferenceSettings,
    ThroughputSettings,
)
from driftwire.errors import ConfigError
from driftwire.profiling.settings import ProfileSettings

__all__ = [
    "ENV_PREFIX",
    "AlertSettings",
    "BridgeSettings",
    "CanarySettings",
    "ConsumerSettings",
    "DetectSettings",
    "HttpSettings",
    "KafkaSettings",
    "LatencySettings",
    "LogSettings",
    "ProfileSettings",
    "QualitySettings",
    "ReferenceSettings",
    "Settings",
    "SilenceSettings",
    "ThroughputSettings",
    "TopicSettings",
    "load_settings",
]

ENV_PREFIX = "DRIFTWIRE_"


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
    max_drift_conditions_per_version: int = Field(
        500,
        ge=1,
        description="drift conditions (4 series each: score, two thresholds, detected) "
        "exported per model version; the rest are omitted, firing and highest first",
    )
    max_drift_conditions: int = Field(
        20_000, ge=1, description="drift conditions exported in all, the same way"
    )


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
        self.detect.check(round(self.profile.bucket_seconds * 1000))
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
