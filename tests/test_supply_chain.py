"""The supply chain is locked and licensed: lock files with hashes that satisfy pyproject, used by
the Makefile and the Dockerfile; the Apache-2.0 LICENSE; no copyleft runtime dependency."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import check_licenses
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?: ; (.*?))?(?: \\)?$")


def _locked(name: str) -> dict[str, list[tuple[Version, str | None, list[str]]]]:
    """name -> [(version, marker, hashes)] of one lock file."""
    pins: dict[str, list[tuple[Version, str | None, list[str]]]] = {}
    current: list[str] | None = None
    for line in (REPO / name).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = []
            key = canonicalize_name(match[1])
            pins.setdefault(key, []).append((Version(match[2]), match[3], current))
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current.append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return pins


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", ("dependencies",)), ("requirements-dev.lock", ("dependencies", "dev"))],
)
def test_lock_pins_every_requirement_within_its_range_with_hashes(
    lock: str, groups: tuple[str, ...]
) -> None:
    pins = _locked(lock)
    project = PYPROJECT["project"]
    wanted = [
        Requirement(r)
        for g in groups
        for r in (project[g] if g == "dependencies" else project["optional-dependencies"][g])
    ]
    for req in wanted:
        key = canonicalize_name(req.name)
        assert key in pins, f"{req.name} is not in {lock}: run make lock"
        for version, _marker, _hashes in pins[key]:
            assert req.specifier.contains(version, prereleases=True), (
                f"{lock} pins {req.name}=={version} outside {req.specifier}: run make lock"
            )
    for name, entries in pins.items():
        for version, _marker, hashes in entries:
            assert hashes, f"{lock}: {name}=={version} has no hash"
            assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_dev_lock_agrees_with_the_runtime_lock() -> None:
    runtime, dev = _locked("requirements.lock"), _locked("requirements-dev.lock")
    for name, entries in runtime.items():
        assert {(v, m) for v, m, _ in entries} == {(v, m) for v, m, _ in dev[name]}, name


def test_every_runtime_dependency_has_an_upper_bound() -> None:
    for line in PYPROJECT["project"]["dependencies"]:
        req = Requirement(line)
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), (
            f"{req.name} has no upper bound: a new major version could break driftwire"
        )


def test_makefile_and_dockerfile_install_from_the_locks_with_hashes() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "--require-hashes -r requirements-uv.lock" in makefile  # the installer, bootstrapped
    sync = r"\$\(UV\) pip install .*--require-hashes .*-r requirements-dev\.lock"
    assert re.search(sync, makefile)
    assert "uv pip compile" in makefile.replace("$(UV)", "uv")  # make lock re-resolves
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY requirements.lock" in dockerfile
    assert re.search(r"pip install --require-hashes .*-r requirements\.lock", dockerfile)
    assert "requirements.lock" in (REPO / ".dockerignore").read_text()
    assert _locked("requirements-uv.lock").keys() == {"uv"}


def test_license_file_is_the_apache_2_text_pyproject_promises() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "9. Accepting Warranty" in text


@pytest.mark.parametrize(
    ("licence", "kind"),
    [
        ("MIT License", "ok"),
        ("Apache-2.0 OR BSD-2-Clause", "ok"),
        ("BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0", "ok"),
        ("Python Software Foundation License", "ok"),
        ("MPL-2.0 AND (Apache-2.0 OR MIT)", "weak"),
        ("GPL-3.0-only", "copyleft"),
        ("GNU General Public License v2 (GPLv2)", "copyleft"),
        ("LGPL-2.1-or-later", "copyleft"),
        ("AGPL-3.0", "copyleft"),
        ("MIT AND GPL-2.0-only", "copyleft"),
        ("(GPL-2.0-only OR MIT) AND Apache-2.0", "ok"),
        ("BSD License; GNU Lesser General Public License v3 (LGPLv3)", "copyleft"),
        ("SSPL-1.0", "copyleft"),
        ("EUPL-1.2", "copyleft"),
        ("Proprietary", "unknown"),
        ("UNKNOWN", "unknown"),
    ],
)
def test_licence_verdicts(licence: str, kind: str) -> None:
    assert check_licenses.verdict(licence) == kind


def test_runtime_closure_is_the_runtime_not_the_dev_extra() -> None:
    names = {canonicalize_name(n) for n in check_licenses.runtime_closure()}
    assert {"aiokafka", "faust-streaming", "numpy", "multidict"} <= names  # direct + transitive
    assert not names & {"pytest", "mypy", "ruff", "pip-licenses", "driftwire"}


def _dist(root: Path, name: str, licence: str, requires: tuple[str, ...] = ()) -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.4", f"Name: {name}", "Version: 1.0"]
    lines += [f"License-Expression: {licence}"] + [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def _check(root: Path, dist: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = REPO / "tools" / "check_licenses.py"
    return subprocess.run(
        [sys.executable, str(script), dist], env=env, capture_output=True, text=True, timeout=60
    )


def test_check_fails_on_a_copyleft_dependency_and_passes_without_it(tmp_path: Path) -> None:
    _dist(tmp_path, "appwithgpl", "Apache-2.0", ("gplthing>=1", "fine; extra == 'dev'"))
    _dist(tmp_path, "gplthing", "GPL-3.0-or-later", ("okthing",))
    _dist(tmp_path, "okthing", "MIT")
    _dist(tmp_path, "appclean", "Apache-2.0", ("okthing", "gplthing; extra == 'dev'"))
    bad = _check(tmp_path, "appwithgpl")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "gplthing is under 'GPL-3.0-or-later' (copyleft)" in bad.stdout
    assert "1 of 2 runtime dependencies fail" in bad.stdout
    good = _check(tmp_path, "appclean")  # the GPL one is only in an extra: not at run time
    assert good.returncode == 0, good.stdout + good.stderr
    assert "1 runtime dependencies, no copyleft" in good.stdout


def test_driftwire_runtime_dependencies_pass_the_licence_check() -> None:
    assert check_licenses.main([]) == 0
