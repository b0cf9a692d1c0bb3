"""The ``driftwire`` command and its verbs (``driftwire.cli:main`` is the entry point)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``driftwire`` command (see :mod:`driftwire.cli.command`)."""
    from driftwire.cli.command import main as run

    return run(argv)
