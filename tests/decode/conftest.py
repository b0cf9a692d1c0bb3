"""The decoder tests run once per decoding path: the pure-Python one and, when the compiled
extension (``driftwire-native``) is installed, the compiled one.

``DRIFTWIRE_REQUIRE_NATIVE=1`` (set by ``make test`` when it built the extension) makes a
missing extension an error instead of a pure-Python-only run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from driftwire.decode import _native

PATHS = ["python", "native"] if _native.AVAILABLE else ["python"]

if os.environ.get("DRIFTWIRE_REQUIRE_NATIVE") == "1" and not _native.AVAILABLE:
    raise RuntimeError(
        "DRIFTWIRE_REQUIRE_NATIVE=1 but the compiled decoder does not import;"
        " build it with 'make native' (needs cargo) or unset the variable"
    )

# The differential tests call the extension directly: without it there is nothing to compare.
collect_ignore = [] if _native.AVAILABLE else ["test_native.py"]


@pytest.fixture(scope="module", params=PATHS, autouse=True)
def decoding_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Module-scoped (hypothesis tests may use it): ``decode_batch`` takes this path."""
    before = _native.ACTIVE
    _native.ACTIVE = request.param == "native"
    try:
        yield request.param
    finally:
        _native.ACTIVE = before
