"""The producer's Kafka security settings: the worker's ``kafka.*`` keys, without pydantic.

A model server usually runs next to a driftwire worker configured by ``DRIFTWIRE_KAFKA_*``
variables; :meth:`KafkaSecurity.from_env` reads the same variables, ``_FILE`` variants
included, so both ends sign in the same way:

>>> env = {"DRIFTWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
...        "DRIFTWIRE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
...        "DRIFTWIRE_KAFKA_SASL_USERNAME": "model-server",
...        "DRIFTWIRE_KAFKA_SASL_PASSWORD": "hunter2-hunter2"}
>>> security = KafkaSecurity.from_env(env)
>>> security.sasl_username, security.client_options()["sasl_mechanism"]
('model-server', 'SCRAM-SHA-512')
>>> "hunter2" in repr(security)
False

Pass it as ``InferenceLogger(..., security=security)``. Secrets never appear in ``repr``;
an error names the variable, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from driftwire.errors import ConfigError

__all__ = ["KafkaSecurity"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENV_PREFIX = "DRIFTWIRE_KAFKA_"


@dataclass(frozen=True, kw_only=True)
class KafkaSecurity:
    """How the producer signs in: the same meaning as the worker's ``kafka.*`` settings."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ConfigError("kafka.security_protocol", f"one of {', '.join(PROTOCOLS)}")
        if self.sasl_mechanism is not None and self.sasl_mechanism not in MECHANISMS:
            raise ConfigError("kafka.sasl_mechanism", f"one of {', '.join(MECHANISMS)}")
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ConfigError(
                "kafka.sasl_password",
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password",
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        """From ``DRIFTWIRE_KAFKA_<KEY>`` / ``DRIFTWIRE_KAFKA_<KEY>_FILE`` (file content,
        stripped), as the worker reads them; unset keys keep their defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name + "_FILE" in env:
                path = env[name + "_FILE"]
                try:
                    values[f.name] = Path(path).read_text().strip()
                except OSError as exc:
                    raise ConfigError(
                        f"kafka.{f.name}", f"cannot read {name}_FILE={path}: {exc.strerror}"
                    ) from None
            elif name in env:
                values[f.name] = env[name]
        if "ssl_check_hostname" in values:
            flag = str(values["ssl_check_hostname"]).strip().lower()
            if flag not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError("kafka.ssl_check_hostname", "true or false")
            values["ssl_check_hostname"] = flag in ("true", "1", "yes")
        return cls(**values)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`aiokafka.AIOKafkaProducer`."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            context = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_password,
            )
            context.check_hostname = self.ssl_check_hostname
            options["ssl_context"] = context
        return options
