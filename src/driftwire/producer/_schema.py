"""Development mode (``validate=True``): every event checked against the JSON Schema.

The schema is ``schemas/inference-event.schema.json``, shipped inside the package;
``jsonschema`` is a development dependency, imported only when a logger asks for this mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from driftwire.errors import ConfigError
from driftwire.producer._event import InvalidEventError

_SCHEMA_NAME = "inference-event.schema.json"


def _schema_path() -> Path:
    """The inference-event schema shipped in the package (``driftwire/schemas``)."""
    path = Path(__file__).resolve().parents[1] / "schemas" / _SCHEMA_NAME
    if not path.is_file():
        raise ConfigError("producer.validate", f"{_SCHEMA_NAME} not found next to driftwire")
    return path


def _schema_validator() -> Callable[[Any], None]:
    try:
        import jsonschema
    except ImportError:
        raise ConfigError(
            "producer.validate",
            "development mode needs jsonschema",
            "pip install 'driftwire[dev]' or jsonschema",
        ) from None
    schema = orjson.loads(_schema_path().read_bytes())
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def check(event: Any) -> None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(event))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "<event>"
            raise InvalidEventError(where, error.message)

    return check
