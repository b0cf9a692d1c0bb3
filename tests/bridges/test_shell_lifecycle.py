"""A bridge runs once and refuses misuse with errors that ``python -O`` keeps (no broker)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from driftwire.bridges._shell import BridgeShell
from driftwire.bridges.webhook import WebhookTarget
from driftwire.errors import LifecycleError
from driftwire.ops.config import Settings


def shell() -> BridgeShell:
    with socket.socket() as sock:  # a local port nothing listens on: refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings.model_validate(
        {"kafka": {"bootstrap_servers": f"127.0.0.1:{port}"}, "topics": {"create": False}}
    )
    return BridgeShell(settings, WebhookTarget("http://127.0.0.1:9/alerts"))


def test_a_rebalance_callback_before_run_is_refused() -> None:
    bridge = shell()
    with pytest.raises(LifecycleError, match="webhook bridge's consumer is used before run"):
        asyncio.run(bridge.on_assigned([TopicPartition("driftwire-alerts", 0)]))


def test_a_bridge_runs_once() -> None:
    bridge = shell()

    async def twice() -> None:
        with pytest.raises(KafkaConnectionError):  # no broker: the first run fails to start
            await bridge.run(asyncio.Event())
        await bridge.run(asyncio.Event())

    with pytest.raises(LifecycleError, match="webhook bridge was started already"):
        asyncio.run(twice())
