"""Settings: one YAML file plus ``DRIFTWIRE_*`` environment overrides, validated at start.

Every key lives in a section (``kafka``, ``topics``, ``consumer``, ``profile``, ``detect``,
``alerts``, ``http``, ``log``, ``bridges``). An environment variable ``DRIFTWIRE_<SECTION>_<KEY>``
overrides ``<section>.<key>`` (``DRIFTWIRE_KAFKA_BOOTSTRAP_SERVERS`` sets
``kafka.bootstrap_servers``). Secrets may come from files: ``DRIFTWIRE_KAFKA_SASL_PASSWORD_FILE``,
or ``sasl_password_file: /run/secrets/kafka`` in the YAML file; every ``<key>_FILE`` /
``<key>_file`` names a file whose content (stripped) is the value. An unknown key, a wrong type
or a missing required value raises :class:`ConfigError` naming the key and what is expected.

Secrets (:data:`SECRET_KEYS`) are :class:`pydantic.SecretStr`: masked in ``repr``, ``str`` and
dumps, never echoed by a config error, and registered with :mod:`driftwire._secrets` when the
settings are loaded, so logs and error lines mask them too.

>>> s = load_settings(None, env={"DRIFTWIRE_TOPICS_EVENTS": "inference"})
>>> s.topics.events, s.topics.dead_letter_topic
('inference', 'inference.dlq')
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator

from driftwire import _secrets
from driftwire._settings import Section as _Section
from driftwire.alerts.settings import AlertSettings, SilenceSettings
from driftwire.detect.settings import (
    CanarySettings,
    DetectSettings,
    LatencySettings,
    QualitySettings,
    ReferenceSettings,
    ThroughputSettings,
    slot_minutes_for,
)
from driftwire.errors import REMOVE, ConfigError
from driftwire.profiling.settings import ProfileSettings
from driftwire.truth.settings import TruthSettings

__all__ = [
    "ENV_PREFIX",
    "SECRET_KEYS",
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
    "TruthSettings",
    "apply_suggestion",
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
    sasl_password: SecretStr | None = Field(None, description="secret; or sasl_password_file")
    ssl_cafile: str | None = Field(None, description="PEM file of the CA(s) to trust")
    ssl_certfile: str | None = Field(None, description="PEM client certificate (mTLS)")
    ssl_keyfile: str | None = Field(None, description="PEM private key of ssl_certfile")
    ssl_password: SecretStr | None = Field(
        None, description="secret: the password of an encrypted ssl_keyfile; or ssl_password_file"
    )
    ssl_check_hostname: bool = Field(
        True, description="verify that the broker's certificate names the host connected to"
    )
    startup_timeout_seconds: float = Field(
        120.0,
        ge=0,
        description="how long a process retries an unreachable broker at start (backoff "
        "0.5 s doubling to 10 s) before it exits non-zero; 0: one try",
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and secret(self.sasl_password)
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
                sasl_plain_password=secret(self.sasl_password),
            )
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = self.ssl_context()
        return options

    def ssl_context(self) -> Any:
        """The TLS context for SSL / SASL_SSL: verification on, the CA file, the client pair."""
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=secret(self.ssl_password),
        )
        context.check_hostname = self.ssl_check_hostname
        return context


def secret(value: SecretStr | None) -> str | None:
    """The plain value of an optional secret, for the one call that needs it."""
    return None if value is None else value.get_secret_value()


class TopicSettings(_Section):
    """Topic names. ``dead_letter`` defaults to ``<events>.dlq``."""

    events: str = Field("inference-events", min_length=1)
    labels: str = Field("inference-labels", min_length=1)  # ground truth (the truth stage)
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
    max_batch_records: int = Field(8000, ge=1, le=100_000)
    fetch_timeout_ms: int = Field(500, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    session_timeout_ms: int = Field(30_000, ge=1000)
    shutdown_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="a stop (SIGTERM) finishes the batch in hand, flushes, commits and leaves "
        "the group within this; what is not committed by then is read again by the next owner",
    )


class ProcessingSettings(_Section):
    """Stage 1's delivery guarantee: at-least-once, or exactly-once through Kafka transactions."""

    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "exactly_once",
        description="exactly_once (the default): each input partition's partials, watermarks, "
        "dead letters and offsets are committed in one Kafka transaction (transactional id "
        "<consumer.group_id>-eos-<topic>-<partition>); needs a broker with a transaction "
        "coordinator and the transactional-id ACLs. at_least_once: no transactions; a crash "
        "can write partials twice, which stage 2 removes by their ids",
    )
    transaction_timeout_seconds: float = Field(
        60.0,
        ge=1.0,
        le=900.0,
        description="exactly_once: the broker aborts a transaction left open this long (its "
        "producer died and no new owner fenced it); read_committed readers wait that long",
    )
    coordinator_timeout_seconds: float = Field(
        120.0,
        gt=0,
        le=3600.0,
        description="exactly_once: how long a transactional producer waits for the broker's "
        "transaction coordinator (registering its transactional id) before the worker exits "
        "with one line saying what the broker lacks",
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
    request_timeout_seconds: float = Field(
        10.0, gt=0, description="one HTTP request: connect, send, and read the answer"
    )
    ssl_cafile: str | None = Field(
        None,
        description="PEM CA file trusted for HTTPS receivers, besides the system's; "
        "certificates are always verified",
    )
    alertmanager_url: str = Field(
        "http://localhost:9093", description="Alertmanager base URL (POST /api/v2/alerts)"
    )
    alertmanager_resend_seconds: float = Field(
        60.0, gt=0, description="firing alerts are re-sent this often (endsAt = 4x ahead)"
    )
    pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue", description="Events API v2 endpoint"
    )
    pagerduty_routing_key: SecretStr | None = Field(
        None, description="the integration key of the PagerDuty service (secret)"
    )
    pagerduty_severity: dict[str, PagerDutySeverity] = Field(
        default_factory=_pagerduty_severities,
        description="driftwire severity -> payload.severity; anything else is info",
    )
    slack_webhook_url: SecretStr | None = Field(
        None, description="a Slack incoming-webhook URL (secret)"
    )
    webhook_url: str | None = Field(None, description="generic webhook: the CloudEvent POSTed")
    webhook_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra headers, e.g. Authorization (values secret)"
    )


class HttpSettings(_Section):
    """The metrics and health endpoint (``/metrics``, ``/healthz``, ``/readyz``)."""

    host: str = "0.0.0.0"
    port: int = Field(9464, ge=0, le=65535)
    web_config_file: str | None = Field(
        None,
        description="YAML file in Prometheus' web configuration format: tls_server_config "
        "(TLS, mTLS) and basic_auth_users (bcrypt hashes) for every route of the worker's and "
        "the bridges' HTTP server; unset: plain HTTP without authentication",
    )
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
    processing: ProcessingSettings = ProcessingSettings()
    profile: ProfileSettings = ProfileSettings()
    detect: DetectSettings = DetectSettings()
    alerts: AlertSettings = AlertSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    bridges: BridgeSettings = BridgeSettings()
    truth: TruthSettings = TruthSettings()

    @model_validator(mode="before")
    @classmethod
    def _slots_follow_bucket(cls, data: Any) -> Any:
        """``detect.references.slot_minutes`` unset follows ``profile.bucket_seconds``: an
        hour, or the shortest whole number of longer buckets that divides a day (a day for
        day-long buckets), so that setting the bucket alone never stops start-up."""
        if not isinstance(data, Mapping):
            return data
        profile, detect = data.get("profile") or {}, data.get("detect") or {}
        if not isinstance(profile, Mapping) or not isinstance(detect, Mapping):
            return data
        refs = detect.get("references") or {}
        if not isinstance(refs, Mapping) or "slot_minutes" in refs:
            return data
        try:
            bucket_ms = round(float(profile.get("bucket_seconds", 60)) * 1000)
        except (TypeError, ValueError):
            return data  # the field's own validation says what is wrong
        slot = slot_minutes_for(bucket_ms) if bucket_ms > 0 else None
        if slot is None:
            return data
        return {**data, "detect": {**detect, "references": {**refs, "slot_minutes": slot}}}

    @model_validator(mode="after")
    def _slots_tile_buckets(self) -> Settings:
        self.detect.check(round(self.profile.bucket_seconds * 1000))
        return self

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, in plain text (for redaction only)."""
        found: list[str] = []
        for section, key in SECRET_KEYS:
            value = getattr(getattr(self, section), key)
            values = value.values() if isinstance(value, dict) else [value]
            found += [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
        return found


_SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
}

SECRET_KEYS: frozenset[tuple[str, str]] = frozenset(
    (section, key)
    for section, model in _SECTIONS.items()
    for key, field in model.model_fields.items()
    if "SecretStr" in str(field.annotation)
)
"""(section, key) of every secret setting: SASL password, TLS key password, PagerDuty routing
key, Slack webhook URL, webhook headers."""


def _read_file(where: str, name: str, path: Any, *, mapping: bool) -> Any:
    try:
        text = Path(str(path)).read_text().strip()
    except OSError as exc:
        raise ConfigError(where, f"cannot read {name}={path}: {exc.strerror}") from None
    if not mapping:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(where, f"{name}={path} must hold a YAML mapping (header: value)")
    return value


def _is_mapping_field(section: str, key: str) -> bool:
    return "dict[" in str(_SECTIONS[section].model_fields[key].annotation)


def _file_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Replace ``<key>_file: PATH`` in the YAML sections by ``<key>: <the file's content>``."""
    out = dict(data)
    for section, values in data.items():
        if section not in _SECTIONS or not isinstance(values, dict):
            continue
        fields = _SECTIONS[section].model_fields
        resolved = dict(values)
        for key, path in values.items():
            stem = str(key)[:-5] if str(key).endswith("_file") else None
            if stem is None or stem not in fields or str(key) in fields:
                continue
            mapping = _is_mapping_field(section, stem)
            resolved[stem] = _read_file(f"{section}.{key}", str(key), path, mapping=mapping)
            del resolved[key]
        out[section] = resolved
    return out


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
            mapping = _is_mapping_field(section, key)
            value = _read_file(f"{section}.{key}", name, raw, mapping=mapping)
        elif key in _SECTIONS[section].model_fields and raw.strip()[:1] in "{[":
            value = yaml.safe_load(raw)
        if key not in _SECTIONS[section].model_fields:
            known = ", ".join(sorted(_SECTIONS[section].model_fields))
            raise ConfigError(f"{section}.{key}", f"unknown key set by {name}", f"known: {known}")
        tree.setdefault(section, {})[key] = value
    return tree


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The pydantic field at ``loc`` in :class:`Settings`, or None (inside a dict or list)."""
    model: Any = Settings
    found: Any = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        found = model.model_fields.get(str(part))
        if found is None:
            return None
        model = found.annotation
    return found


def _default_of(field: Any) -> tuple[bool, Any]:
    """``(True, default)`` of a leaf field that has one (not a whole section)."""
    if field is None:
        return False, None
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.is_required():
        return False, None
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return False, None
    return True, list(value) if isinstance(value, tuple) else value


def _shown(value: Any) -> str:
    """A value as it is written in the YAML file."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _describe(error: Any) -> ConfigError:
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "<root>"
    if tuple(str(p) for p in loc[:2]) in SECRET_KEYS:
        return ConfigError(key, error.get("msg", error["type"]))  # never echo a secret
    kind = error["type"]
    if kind == "extra_forbidden":
        model: Any = Settings
        for part in loc[:-1]:
            if isinstance(model, type) and issubclass(model, BaseModel):
                field = model.model_fields.get(str(part))
                model = field.annotation if field is not None else None
            else:  # inside a dict, tuple or list of sections: step to the section type
                model = next((a for a in get_args(model) if isinstance(a, type)), None)
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        names = sorted(model.model_fields) if is_model else []
        known = ", ".join(names)
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        if close:
            parent = ".".join(str(p) for p in loc[:-1])
            return ConfigError(
                key,
                "unknown key",
                f"did you mean {close[0]}? known keys here: {known}",
                suggestion={key: REMOVE, f"{parent}.{close[0]}": error.get("input")},
            )
        return ConfigError(key, "unknown key", f"known keys here: {known}")
    expected = error.get("msg", kind)
    given = error.get("input")
    has_default, default = _default_of(_field_at(loc))
    secret = "password" in key or "key" in key.rsplit(".", 1)[-1] or "url" in key
    fix = f"e.g. the default, {_shown(default)}" if has_default and not secret else None
    suggestion = {key: default} if has_default else None
    if isinstance(given, Mapping | list) or secret:
        return ConfigError(key, expected, fix, suggestion=suggestion)  # may hold secrets
    return ConfigError(key, f"{expected}; got {given!r}", fix, suggestion=suggestion)


def apply_suggestion(data: Mapping[str, Any], suggestion: Mapping[str, object]) -> dict[str, Any]:
    """``data`` (a settings tree) with a :attr:`ConfigError.suggestion` applied.

    >>> apply_suggestion({"consumer": {"max_batch_record": 5}},
    ...                  {"consumer.max_batch_record": REMOVE, "consumer.max_batch_records": 5})
    {'consumer': {'max_batch_records': 5}}
    """
    out: dict[str, Any] = copy.deepcopy(dict(data))
    for dotted, value in suggestion.items():
        *path, last = dotted.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        if value == REMOVE:
            node.pop(last, None)
        else:
            node[last] = value
    return out


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
            raise ConfigError("<file>", f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(data, dict):
            raise ConfigError("<root>", f"{path} must hold a mapping of sections")
        data = _file_keys(data)
    data = _merge(data, _env_overrides(env))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        error = _describe(exc.errors()[0])
        raise ConfigError(
            error.key,
            _raw_secrets(data).redact(error.problem),
            error.fix,
            suggestion=error.suggestion,
        ) from None
    _secrets.register(settings.secret_values())
    return settings


def _raw_secrets(data: Mapping[str, Any]) -> _secrets.Redactor:
    """The secret values in unvalidated ``data`` (a failed validation still must not echo them)."""
    found: list[str] = []
    for section, key in SECRET_KEYS:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        values = value.values() if isinstance(value, dict) else [value]
        found += [str(v) for v in values if isinstance(v, str | int | float) and str(v)]
    return _secrets.Redactor(found)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, without the snippet of the offending line (it may hold a secret)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    if mark is None:
        return str(problem)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
