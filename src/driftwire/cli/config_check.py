"""``driftwire config check [FILE]``: validate a settings file and print the effective settings.

The effective settings are the defaults, the file and the ``DRIFTWIRE_*`` variables, as a
worker would run with them, printed as YAML with every secret (a field that is never logged:
SASL password, PagerDuty routing key, Slack webhook URL, webhook headers) masked. A bad file,
or a bad file that ``http.web_config_file`` names, gives the same one line as at start-up,
with a fix, and exit code 2.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from driftwire.ops.config import Settings, load_settings

MASK = "***"


def masked(model: BaseModel) -> dict[str, Any]:
    """``model`` as plain data, every field declared ``repr=False`` masked when set."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out[name] = masked(value)
        elif isinstance(value, SecretStr):
            out[name] = MASK
        elif not field.repr and value:
            out[name] = {k: MASK for k in value} if isinstance(value, dict) else MASK
        elif isinstance(value, dict):
            out[name] = {
                k: masked(v) if isinstance(v, BaseModel) else _plain(v) for k, v in value.items()
            }
        else:
            out[name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def effective_yaml(settings: Settings) -> str:
    return yaml.safe_dump(masked(settings), sort_keys=False, default_flow_style=False)


def run_config_check(path: str | None) -> int:
    from driftwire.ops.web_config import load_web_config

    settings = load_settings(path)
    load_web_config(settings.http.web_config_file)  # the file it names is checked too
    source = path or "no file (defaults)"
    print(
        f"# {source}: valid. Effective settings (defaults < file < DRIFTWIRE_* variables), "
        "secrets masked:"
    )
    print(effective_yaml(settings), end="")
    return 0
