"""The package's public names: each resolves, and importing the package does no work."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import driftwire


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert sorted(driftwire.__all__) == sorted(["__version__", *driftwire._EXPORTS])
    assert len(set(driftwire.__all__)) == len(driftwire.__all__)


def test_every_public_name_resolves() -> None:
    for name in driftwire.__all__:
        assert getattr(driftwire, name) is not None, name


def test_import_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, driftwire; "
        "print(sorted(m for m in ('numpy', 'aiokafka', 'faust', 'datasketches', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        driftwire.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_the_schemas_ship_inside_the_package() -> None:
    """``schemas/`` is the contract users read; the wheel carries the same files (a symlink)."""
    shipped = resources.files("driftwire") / "schemas"
    root = Path(__file__).parent.parent / "schemas"
    names = sorted(p.name for p in root.glob("*.schema.json"))
    assert names and sorted(p.name for p in shipped.iterdir() if p.name.endswith(".json")) == names
    for name in names:
        assert (shipped / name).read_bytes() == (root / name).read_bytes()
