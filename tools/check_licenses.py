"""Fail when a runtime dependency of driftwire carries a copyleft licence (``make licenses``).

The runtime dependencies are the closure of driftwire's own ``Requires-Dist`` (no extras) over
the installed distributions, so the check sees exactly what ``pip install driftwire`` brings.
Their licences come from pip-licenses (``--from=mixed``: the SPDX ``License-Expression`` or
the ``License`` field, else the trove classifiers).

``python tools/check_licenses.py [DIST]`` checks DIST's closure instead of driftwire's.

Policy (as the Apache Software Foundation's categories): permissive licences pass; file-level
weak copyleft (MPL-2.0, EPL) passes and is listed, since a change to such a file is the only
thing that must be shared; strong or library-level copyleft (GPL, LGPL, AGPL, SSPL, EUPL,
OSL, CC-BY-SA, ...) fails, and so does a licence that cannot be read. In an SPDX expression
``A OR B`` passes when one side passes and ``A AND B`` when both do.

>>> verdict("MPL-2.0 AND (Apache-2.0 OR MIT)")
'weak'
>>> verdict("GPL-3.0-or-later OR MIT")
'ok'
>>> verdict("GNU Lesser General Public License v3 (LGPLv3)")
'copyleft'
>>> verdict("UNKNOWN")
'unknown'
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

COPYLEFT = re.compile(
    r"\b(A?GPL|L?GPL|LGPL|GPLv?\d|LGPLv?\d|AGPLv?\d|GNU|SSPL|Server Side Public|EUPL|OSL"
    r"|Open Software License|CC-BY-SA|Sleepycat|CPAL|Affero|Lesser General|General Public)",
    re.IGNORECASE,
)
WEAK = re.compile(r"\b(MPL|Mozilla Public|EPL|Eclipse Public)", re.IGNORECASE)
PERMISSIVE = re.compile(
    r"\b(MIT|BSD|0BSD|Apache|ISC|PSF|Python Software Foundation|Zlib|CC0|Unlicense"
    r"|Repoze|HPND|Public Domain|MIT-CMU)",
    re.IGNORECASE,
)
_RANK = {"ok": 0, "weak": 1, "unknown": 2, "copyleft": 3}


def _one(licence: str) -> str:
    if COPYLEFT.search(licence):
        return "copyleft"
    if WEAK.search(licence):
        return "weak"
    if PERMISSIVE.search(licence):
        return "ok"
    return "unknown"


def verdict(licence: str) -> str:
    """``ok``, ``weak`` (file-level copyleft), ``copyleft`` or ``unknown`` for one licence."""
    text = licence.strip()
    if not text or text.upper() == "UNKNOWN":
        return "unknown"
    # pip-licenses joins several classifiers with "; ": the package is under all of them
    parts = [p for p in text.split(";") if p.strip()]
    if len(parts) > 1:
        return max((verdict(p) for p in parts), key=_RANK.__getitem__)
    return _expression(text)


def _expression(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and _closing(text) == len(text) - 1:
        text = text[1:-1].strip()
    for operator, pick in ((" OR ", min), (" AND ", max)):
        sides = _split_top(text, operator)
        if len(sides) > 1:
            return pick((_expression(s) for s in sides), key=_RANK.__getitem__)
    return _one(text)


def _closing(text: str) -> int:
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i
    return -1


def _split_top(text: str, operator: str) -> list[str]:
    sides, depth, start, i = [], 0, 0, 0
    while i < len(text):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0 and text.startswith(operator, i):
            sides.append(text[start:i])
            i += len(operator)
            start = i
            continue
        i += 1
    sides.append(text[start:])
    return sides


def runtime_closure(root: str = "driftwire") -> list[str]:
    """The installed distributions that ``root`` needs at run time (its extras excluded)."""
    seen: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist.metadata["Name"]
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    seen.pop(re.sub(r"[-_.]+", "-", root).lower())
    return sorted(seen.values(), key=str.lower)


def main(argv: list[str] | None = None) -> int:
    args = (sys.argv[1:] if argv is None else argv) or ["driftwire"]
    names = runtime_closure(args[0])
    pip_licenses = Path(sys.executable).with_name("pip-licenses")
    out = subprocess.run(
        [str(pip_licenses), "--from=mixed", "--format=json", "--packages", *names],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = {re.sub(r"[-_.]+", "-", p["Name"]).lower(): p for p in json.loads(out)}
    failed = 0
    weak = []
    for name in names:
        row = found.get(re.sub(r"[-_.]+", "-", name).lower())
        licence = row["License"] if row else "UNKNOWN"
        kind = verdict(licence)
        if kind in ("copyleft", "unknown"):
            failed += 1
            print(f"licence check: {name} is under {licence!r} ({kind}): not allowed at run time")
        elif kind == "weak":
            weak.append(f"{name} ({licence})")
    if failed:
        print(f"licence check: {failed} of {len(names)} runtime dependencies fail the policy")
        return 1
    note = f"; file-level copyleft, allowed: {', '.join(weak)}" if weak else ""
    print(f"licence check: {len(names)} runtime dependencies, no copyleft{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
