"""The fold-from-columns tests need the compiled decoder: without it there is one path only."""

from __future__ import annotations

from driftwire.decode import _native

collect_ignore = [] if _native.AVAILABLE else ["test_fold_columns.py"]
