"""The README's config table is the settings model: every key of the model has a row, every row
names a key of the model, and every key the README's text or ``deploy/driftwire.yaml`` uses is
in the table. So a new key without a row, or a row that outlived its key, fails here.

In the table's first column, ``a.b.c`` / ``d`` / ``e`` names ``a.b.c``, ``a.b.d`` and ``a.b.e``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from driftwire.ops.config import Settings

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
CONFIG_DOC = (REPO / "docs" / "configuration.md").read_text()  # the table
#: every page the keys are used in: the README and docs/
PAGES = README + "".join(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))
DEPLOY = REPO / "deploy" / "driftwire.yaml"


def model_keys(model: type[BaseModel] = Settings, prefix: str = "") -> set[str]:
    """Dotted keys of every leaf setting (a dict of sections, like ``bridges.routes``, is one)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys |= model_keys(kind, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def table_keys(text: str = CONFIG_DOC) -> set[str]:
    lines = text[text.index("| key | default | meaning |") :].splitlines()[2:]
    keys: set[str] = set()
    for line in lines:
        if not line.startswith("|"):
            break
        prefix = ""
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if "." in name:
                prefix = name.rsplit(".", 1)[0]
                keys.add(name)
            else:
                keys.add(f"{prefix}.{name}")
    return keys


def sections(model: type[BaseModel] = Settings, prefix: str = "") -> set[str]:
    """Dotted names of every section (``detect``, ``detect.references``, ...)."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found.add(prefix + name)
            found |= sections(kind, f"{prefix}{name}.")
    return found


def yaml_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{name}" in sections():
            keys |= yaml_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_the_table_has_a_row_for_every_key_and_no_other() -> None:
    table, model = table_keys(), model_keys()
    assert sorted(model - table) == [], "keys without a row in the README's config table"
    assert sorted(table - model) == [], "rows for keys the settings model does not have"


def test_keys_in_the_readme_text_are_in_the_table() -> None:
    roots = "|".join(Settings.model_fields)
    used = set(re.findall(rf"`((?:{roots})\.[a-z_][a-z0-9_.]*)`", PAGES))
    unknown = sorted(k for k in used if k not in table_keys() and k not in sections())
    assert unknown == []


def test_keys_of_the_deploy_config_are_in_the_table() -> None:
    keys = yaml_keys(yaml.safe_load(DEPLOY.read_text()))
    assert sorted(keys - table_keys()) == []


def test_the_checker_catches_a_missing_row() -> None:
    shortened = CONFIG_DOC.replace("| `http.host` |", "| `http.hots` |")
    assert "http.host" not in table_keys(shortened)
    assert "http.hots" in table_keys(shortened) - model_keys()
