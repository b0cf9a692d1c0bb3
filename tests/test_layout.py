"""The house keeps its shape: the import rules of the package layout, and no import cycle.

Every module under ``src/driftwire`` is parsed (not imported) and its imports collected: those
at module level and those inside functions, but not those under ``if TYPE_CHECKING:`` (they
never run). The rules are the ones the layout states:

1. ``cli`` may import anything, and it is the top: nothing outside ``cli`` imports it.
2. ``stages`` and ``bridges`` never import each other or ``cli``.
3. ``ops`` and ``offline`` never import ``stages``, ``bridges`` or ``cli``; ``ops`` takes from the
   core only its settings sections and a few plain types (:data:`OPS_MAY_IMPORT`).
4. The core (``profiling``, ``detect``, ``truth``, ``alerts``, ``sketch``, ``stats``, ``decode``)
   never imports ``ops``, ``offline``, ``stages``, ``bridges`` or ``cli``, nor aiokafka, faust,
   prometheus_client, pydantic-settings or yaml; ``profiling`` and ``detect`` never import each
   other (they meet only through ``partials``).
5. ``producer`` imports only ``errors`` and ``_codec`` from the package.

and no module reaches itself through its imports. The checker runs on synthetic sources first,
so a rule that stopped catching anything would fail here rather than pass in silence.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = "driftwire"
SRC = Path(__file__).resolve().parent.parent / "src" / PACKAGE

CORE = frozenset({"profiling", "detect", "truth", "alerts", "sketch", "stats", "decode"})
SHELLS = frozenset({"stages", "bridges"})
FORBIDDEN_IN_CORE = frozenset(
    {"aiokafka", "faust", "prometheus_client", "pydantic_settings", "yaml"}
)
#: Core modules (besides every ``<room>.settings``) that ``ops`` may import: plain types.
OPS_MAY_IMPORT = frozenset(
    {
        "driftwire.alerts.alert",  # ALERT_NAMES: the alert kinds a metric label can take
        "driftwire.detect.samples",  # ConditionSample, LatencySample: what the collector reads
    }
)


@dataclass
class Graph:
    """``modules``: each module's package imports; ``external``: its third-party top names;
    ``root_modules``: the modules directly in the package (``driftwire.errors``), not in a room.
    """

    modules: dict[str, set[str]] = field(default_factory=dict)
    external: dict[str, set[str]] = field(default_factory=dict)
    root_modules: set[str] = field(default_factory=set)

    def room(self, module: str) -> str:
        """``driftwire.stages.detect.stage`` -> ``stages``; ``driftwire.errors`` -> ``root``."""
        parts = module.split(".")
        if len(parts) < 2 or module in self.root_modules:
            return "root"
        return parts[1]


# -- reading imports ---------------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, str]]:
    """``(name, imported attribute or "")`` for every import that runs, in any scope."""
    package = module if is_package else module.rpartition(".")[0]
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            for alias in node.names:
                yield name, alias.name
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, ""
        pending.extend(ast.iter_child_nodes(node))


def build_graph(sources: Mapping[str, tuple[str, bool]]) -> Graph:
    """The import graph of ``{module: (source, is_package)}``."""
    graph = Graph()
    for module, (source, is_package) in sources.items():
        targets: set[str] = set()
        external: set[str] = set()
        for name, attr in _imported_names(ast.parse(source), module, is_package):
            if name != PACKAGE and not name.startswith(PACKAGE + "."):
                external.add(name.partition(".")[0])
                continue
            submodule = f"{name}.{attr}"
            target = submodule if attr and submodule in sources else name
            if target != module:
                targets.add(target)
        graph.modules[module] = targets
        graph.external[module] = external
        if module.count(".") == 1 and not is_package:
            graph.root_modules.add(module)
    return graph


def package_sources(root: Path = SRC) -> dict[str, tuple[str, bool]]:
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        sources[".".join(parts)] = (path.read_text(encoding="utf-8"), is_package)
    return sources


# -- the rules ---------------------------------------------------------------------------------


def violations(graph: Graph) -> list[str]:
    """Every import that breaks a rule, as ``'rule N: a imports b'``."""
    found = []
    for module, targets in sorted(graph.modules.items()):
        here = graph.room(module)
        for target in sorted(targets):
            there = graph.room(target)
            if there == here:
                continue
            broken = []
            if there == "cli":
                broken.append(1)
            if here in SHELLS and there in SHELLS | {"cli"}:
                broken.append(2)
            if here in {"ops", "offline"} and there in SHELLS | {"cli"}:
                broken.append(3)
            if (
                here == "ops"
                and there in CORE
                and not target.endswith(".settings")
                and target not in OPS_MAY_IMPORT
            ):
                broken.append(3)
            if here in CORE and there in {"ops", "offline", "stages", "bridges", "cli"}:
                broken.append(4)
            if {here, there} == {"profiling", "detect"}:
                broken.append(4)
            if here == "producer" and target not in {f"{PACKAGE}.errors", f"{PACKAGE}._codec"}:
                broken.append(5)
            found += [f"rule {n}: {module} imports {target}" for n in sorted(set(broken))]
        if here in CORE:
            for name in sorted(graph.external[module] & FORBIDDEN_IN_CORE):
                found.append(f"rule 4: {module} imports {name}")
    return found


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.modules.get(node, ())):
            if target not in graph.modules:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph.modules):
        if node not in index:
            visit(node)
    return sorted(found)


# -- the package -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(package_sources())


def test_the_package_keeps_the_import_rules(graph: Graph) -> None:
    broken = violations(graph)
    assert not broken, "\n".join(broken)


def test_the_package_has_no_import_cycle(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_every_room_is_read(graph: Graph) -> None:
    rooms = {graph.room(m) for m in graph.modules}
    assert rooms >= CORE - {"truth"} | SHELLS | {"cli", "ops", "offline", "producer", "root"}
    assert sum(1 for m in graph.modules if graph.room(m) == "detect") > 10


# -- the checker itself, on synthetic sources ---------------------------------------------------


def _synthetic(**modules: str) -> Graph:
    """Modules named with ``__`` for dots (``stages__profile``); a trailing ``__`` is a package."""
    sources = {}
    for key, source in modules.items():
        is_package = key.endswith("__")
        name = ".".join([PACKAGE, *key.removesuffix("__").split("__")])
        sources[name] = (source, is_package)
    return build_graph(sources)


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        (
            {"detect__detector": "from driftwire.ops.metrics import Metrics"},
            "rule 4: driftwire.detect.detector imports driftwire.ops.metrics",
        ),
        (
            {"detect__x": "def f():\n    import driftwire.stages.inmemory\n"},
            "rule 4: driftwire.detect.x imports driftwire.stages.inmemory",
        ),
        (
            {"profiling__partitions": "from driftwire.detect import window"},
            "rule 4: driftwire.profiling.partitions imports driftwire.detect",
        ),
        (
            {"detect__window": "from driftwire.profiling.clock import EventClock"},
            "rule 4: driftwire.detect.window imports driftwire.profiling.clock",
        ),
        ({"sketch__numeric": "import yaml"}, "rule 4: driftwire.sketch.numeric imports yaml"),
        (
            {"decode__decoder": "from prometheus_client import Counter"},
            "rule 4: driftwire.decode.decoder imports prometheus_client",
        ),
        (
            {"alerts__policy": "import pydantic_settings.main"},
            "rule 4: driftwire.alerts.policy imports pydantic_settings",
        ),
        (
            {"bridges__slack": "from driftwire.cli.worker import EXIT_STUCK"},
            "rule 2: driftwire.bridges.slack imports driftwire.cli.worker",
        ),
        (
            {"stages__profile": "from driftwire.bridges import _shell"},
            "rule 2: driftwire.stages.profile imports driftwire.bridges",
        ),
        (
            {"ops__health": "from driftwire.stages.profile import ProfileStage"},
            "rule 3: driftwire.ops.health imports driftwire.stages.profile",
        ),
        (
            {"offline__baseline": "from driftwire.stages import inmemory"},
            "rule 3: driftwire.offline.baseline imports driftwire.stages",
        ),
        (
            {"ops__metrics": "from driftwire.detect.detector import Detector"},
            "rule 3: driftwire.ops.metrics imports driftwire.detect.detector",
        ),
        (
            {"producer__logger": "from driftwire.partials import Partial"},
            "rule 5: driftwire.producer.logger imports driftwire.partials",
        ),
        (
            {"partials": "from driftwire.cli import main"},
            "rule 1: driftwire.partials imports driftwire.cli",
        ),
    ],
)
def test_the_checker_reports_a_broken_rule(modules: dict[str, str], expected: str) -> None:
    assert expected in violations(_synthetic(**modules))


def test_the_checker_passes_allowed_imports() -> None:
    graph = _synthetic(
        cli__main="import driftwire.stages.profile, driftwire.bridges, driftwire.ops.config",
        stages__profile="from driftwire.profiling.partitions import ProfileCore\nimport aiokafka",
        stages__inmemory="from driftwire.stages import profile",
        ops__config="from driftwire.detect.settings import DetectSettings\nimport yaml",
        ops__metrics="from driftwire.detect.samples import ConditionSample",
        detect__detector=(
            "from typing import TYPE_CHECKING\nfrom driftwire.partials import Partial\n"
            "if TYPE_CHECKING:\n    from driftwire.ops.metrics import Metrics\n"
        ),
        producer__logger="from driftwire.errors import DriftwireError\nfrom . import _queue",
        producer___queue="from driftwire._codec import Writer\nimport aiokafka",
    )
    assert violations(graph) == []


def test_the_checker_finds_cycles_through_local_and_relative_imports() -> None:
    graph = _synthetic(
        decode__="",
        decode__decoder="from driftwire.decode._event import parse",
        decode___event="def parse():\n    from .decoder import DecoderLimits\n",
        decode__limits="",
        decode__batch=(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import driftwire.decode.decoder\n"
        ),
    )
    assert cycles(graph) == [["driftwire.decode._event", "driftwire.decode.decoder"]]
    assert graph.modules["driftwire.decode.batch"] == set()
