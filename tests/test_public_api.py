"""The package's public names: each resolves, and importing the package does no work."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import driftwire


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert sorted(driftwire.__all__) == sorted(["__version__", *driftwire._EXPORTS])
    assert len(set(driftwire.__all__)) == len(driftwire.__all__)


def test_every_public_name_resolves() -> None:
    for name in driftwire.__all__:
        assert getattr(driftwire, name) is not None, name


def _loaded_by(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has loaded after ``import module``."""
    code = f"import sys, {module}; print(*sorted(m for m in {candidates!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize(
    ("module", "unwanted"),
    [
        # the package itself: cheap, its names load on first use
        ("driftwire", ("numpy", "aiokafka", "faust", "datasketches", "scipy", "prometheus_client")),
        # reading the config is not running a worker
        ("driftwire.ops.config", ("prometheus_client", "aiokafka", "faust", "numpy")),
        # the pure detector knows no Kafka, metrics or config files
        ("driftwire.detect.detector", ("aiokafka", "faust", "prometheus_client", "yaml")),
        # nor does stage 1's core
        ("driftwire.profiling.partitions", ("aiokafka", "faust", "prometheus_client", "yaml")),
        # the in-memory transport runs without a Kafka client
        ("driftwire.stages.inmemory", ("aiokafka", "faust")),
        # a model server's import
        ("driftwire.producer.logger", ("numpy", "faust", "prometheus_client", "yaml")),
    ],
)
def test_import_loads_no_heavy_dependency(module: str, unwanted: tuple[str, ...]) -> None:
    assert _loaded_by(module, unwanted) == []


def test_the_probe_sees_a_loaded_dependency() -> None:
    assert _loaded_by("driftwire.ops.metrics", ("prometheus_client", "faust")) == [
        "prometheus_client"
    ]


def test_the_producer_and_the_command_keep_their_import_paths() -> None:
    from driftwire import producer

    for name in producer.__all__:
        assert getattr(producer, name) is not None, name
    from driftwire.producer import AsyncInferenceLogger, InferenceLogger

    assert (
        InferenceLogger.__module__
        == AsyncInferenceLogger.__module__
        == ("driftwire.producer.logger")
    )
    (script,) = entry_points(group="console_scripts", name="driftwire")
    assert script.value == "driftwire.cli:main"
    with pytest.raises(SystemExit) as stopped:
        script.load()(["--version"])
    assert stopped.value.code == 0


def test_names_kept_at_their_old_homes_are_the_moved_objects() -> None:
    from driftwire.cli.worker import EXIT_STUCK as worker_exit_stuck
    from driftwire.decode.decoder import DecoderLimits as decoder_limits
    from driftwire.decode.limits import DecoderLimits
    from driftwire.detect.samples import ConditionSample, LatencySample
    from driftwire.ops import metrics
    from driftwire.ops.config import ProfileSettings as config_profile
    from driftwire.ops.health import EXIT_STUCK
    from driftwire.profiling.settings import ProfileSettings

    assert worker_exit_stuck is EXIT_STUCK == 3
    assert decoder_limits is DecoderLimits and config_profile is ProfileSettings
    assert metrics.ConditionSample is ConditionSample
    assert metrics.LatencySample is LatencySample


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
