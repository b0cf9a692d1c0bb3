"""Development mode (``validate=True``): every record checked against its JSON Schema.

The schemas are ``schemas/inference-event.schema.json`` (events) and
``schemas/ground-truth.schema.json`` (labels), shipped inside the package;
``jsonschema`` is a development dependency, imported only when a logger asks for this mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from driftwire.errors import ConfigError
from driftwire.producer._event import InvalidEventError

EVENT_SCHEMA = "inference-event.schema.json"
LABEL_SCHEMA = "ground-truth.schema.json"


def _schema_path(name: str) -> Path:
    """A schema shipped in the package (``driftwire/schemas``)."""
    path = Path(__file__).resolve().parents[1] / "schemas" / name
    if not path.is_file():
        raise ConfigError("producer.validate", f"{name} not found next to driftwire")
    return path


def _schema_validator(name: str = EVENT_SCHEMA) -> Callable[[Any], None]:
    try:
        import jsonschema
    except ImportError:
        raise ConfigError(
            "producer.validate",
            "development mode needs jsonschema",
            "pip install 'driftwire[dev]' or jsonschema",
        ) from None
    schema = orjson.loads(_schema_path(name).read_bytes())
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def check(event: Any) -> None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(event))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "<event>"
            raise InvalidEventError(where, error.message)

    return check
