"""The profile stage's output: refused sends are kept for the commit, never left unretrieved."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from aiokafka.errors import InvalidTxnState
from prometheus_client import CollectorRegistry

from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.partials import Watermark
from driftwire.profiling.partitions import OutRecord
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core


class _RefusingProducer(ProfileStage):
    """Every send is refused by the broker, as in a transaction broken by a missing ACL."""

    async def _send(self, source: int, topic: str, value: bytes | None, **_: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(InvalidTxnState())
        return fut


def test_a_refused_watermark_send_is_not_logged_as_never_retrieved() -> None:
    """A worker whose stage 1 stops on one refusal (it says so in one line) must not print
    asyncio's "Future exception was never retrieved" for the others after that line: the
    watermark copies' futures (one per partials partition) had no done-callback."""
    settings = Settings()
    stage = _RefusingProducer(
        settings, profile_core(settings), Metrics(CollectorRegistry()), Readiness()
    )
    stage._partials_partitions = [0, 1]
    mark = Watermark("events", 0, 2, 60_000, idle=False)
    unretrieved: list[str] = []

    async def emit_and_stop() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: unretrieved.append(str(context.get("message")))
        )
        await stage._emit([OutRecord(None, mark.encode(), broadcast=True, source=0)])
        await asyncio.sleep(0)  # the done-callbacks run
        assert len(stage._inflight) == 2  # kept: the next commit raises the refusal
        stage._inflight.clear()  # the stage stopped on another refusal first
        gc.collect()

    asyncio.run(emit_and_stop())
    assert not [m for m in unretrieved if "never retrieved" in m], unretrieved
