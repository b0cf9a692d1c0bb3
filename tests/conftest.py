"""Shared pytest fixtures.

Kafka: tests that need a broker take ``kafka_bootstrap`` (and are marked ``@pytest.mark.kafka``).
By default one real single-node Kafka (tools/kafka_broker.py) is started per test session;
set ``KAFKA_BOOTSTRAP_SERVERS`` to use an already running broker instead (e.g. ``make kafka``).
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

_TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
if str(_TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(_TOOLS_DIR))

import kafka_broker  # noqa: E402  (lives in tools/, made importable just above)

_BROKER_KEY = pytest.StashKey[kafka_broker.KafkaBroker]()

# The compiled decoder (native/): without it the tests that compare it with the pure-Python
# path have nothing to compare (the decoder tests then run on the pure path only). With
# DRIFTWIRE_REQUIRE_NATIVE=1 (set by `make test` when it built the extension) it must be there.
from driftwire.decode import _native  # noqa: E402

if os.environ.get("DRIFTWIRE_REQUIRE_NATIVE") == "1" and not _native.AVAILABLE:
    raise RuntimeError(
        "DRIFTWIRE_REQUIRE_NATIVE=1 but the compiled decoder does not import;"
        " build it with 'make native' (needs cargo) or unset the variable"
    )
collect_ignore = (
    [] if _native.AVAILABLE else ["decode/test_native.py", "profiling/test_fold_columns.py"]
)
# the compiled CRC check of fetched batches (native/src/records.rs), in builds that have it
from driftwire.stages import _fetch  # noqa: E402

if _fetch.batch_crcs is None:
    collect_ignore.append("stages/test_fetch_native.py")


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """``host:port`` of a Kafka broker that answers metadata requests. Never skips."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        try:
            kafka_broker.check_metadata(external, timeout=15.0)
        except RuntimeError as exc:
            pytest.fail(
                f"KAFKA_BOOTSTRAP_SERVERS={external} is set but unusable: {exc}", pytrace=False
            )
        yield external
        return

    broker = kafka_broker.KafkaBroker()
    try:
        broker.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start the Kafka test broker:\n{exc}", pytrace=False)
    request.config.stash[_BROKER_KEY] = broker
    try:
        yield broker.bootstrap_servers
    finally:
        del request.config.stash[_BROKER_KEY]
        broker.stop()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test (or earlier run against the same broker) uses."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:180]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the broker log tail to the report of a failed test that used the broker."""
    report = yield
    if report.failed and "kafka_bootstrap" in getattr(item, "fixturenames", ()):
        broker = item.config.stash.get(_BROKER_KEY, None)
        if broker is not None:
            report.sections.append(("kafka broker log (tail)", broker.log_tail(80)))
    return report
