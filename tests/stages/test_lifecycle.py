"""The stages run once and refuse misuse with errors that ``python -O`` keeps."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry

from driftwire.errors import DriftwireError, LifecycleError
from driftwire.ops.config import Settings
from driftwire.ops.health import Readiness
from driftwire.ops.metrics import Metrics
from driftwire.stages.profile import ProfileStage
from driftwire.stages.profile_core import profile_core


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def profile_stage() -> ProfileStage:
    settings = Settings.model_validate(
        {"kafka": {"bootstrap_servers": f"127.0.0.1:{closed_port()}"}}
    )
    metrics = Metrics(CollectorRegistry())
    return ProfileStage(settings, profile_core(settings), metrics, Readiness())


def test_a_rebalance_callback_before_run_is_refused() -> None:
    stage = profile_stage()
    with pytest.raises(LifecycleError, match="admin client is used before run"):
        asyncio.run(stage.on_assigned([TopicPartition("inference-events", 0)]))
    with pytest.raises(LifecycleError, match="consumer is used before run"):
        asyncio.run(stage.on_revoked([TopicPartition("inference-events", 0)]))


def test_the_profile_stage_runs_once() -> None:
    stage = profile_stage()

    async def twice() -> None:
        with pytest.raises(KafkaConnectionError):  # no broker: the first run fails to start
            await stage.run(asyncio.Event())
        await stage.run(asyncio.Event())

    with pytest.raises(LifecycleError, match="profile stage was started already") as error:
        asyncio.run(twice())
    assert isinstance(error.value, DriftwireError) and isinstance(error.value, RuntimeError)
