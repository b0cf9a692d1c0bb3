"""How many partitions the events topic has, as the broker says: the bound the intake checks
partials and watermarks against (:attr:`driftwire.detect.intake.IntakeLimits.input_partitions`).

A schema-valid watermark may name a partition the events topic does not have; admitted, the
detector would wait for that partition for ever if its watermark were low. So the detect stage
asks the broker (listing, then describing the events topic; never describing a topic that is
not listed, which could create it) when it starts, again every ``refresh_s`` (a topic that
grew), and -- at most every ``recheck_s`` -- when a record names a partition beyond the count
it holds, before refusing it (stage 1 may have seen the topic grow first).

When the broker cannot say (no Describe on the topic, the topic does not exist, the broker is
away), the count stays what it was -- unknown at first, when the intake does not check it --
and that is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

log = logging.getLogger("driftwire.stages.detect.stage")


class InputPartitions:
    """The partition count of ``topic`` (``count``; ``None`` while unknown)."""

    def __init__(
        self,
        client_options: dict[str, Any],
        topic: str,
        *,
        clock: Callable[[], float],
        refresh_s: float = 60.0,
        recheck_s: float = 5.0,
    ) -> None:
        self._options = client_options
        self.topic = topic
        self._clock = clock
        self._refresh_s = refresh_s
        self._recheck_s = recheck_s
        self._admin: AIOKafkaAdminClient | None = None
        self._asked_at: float | None = None
        self._unknown_logged = False
        self.count: int | None = None

    async def start(self) -> None:
        """Connect and ask once."""
        admin = AIOKafkaAdminClient(**self._options)
        await admin.start()
        self._admin = admin
        await self.refresh()

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def refresh(self) -> bool:
        """Ask the broker; whether the count changed."""
        self._asked_at = self._clock()
        if self._admin is None:
            return False
        try:
            found = await self._ask(self._admin)
        except (KafkaError, OSError) as exc:
            found = None
            problem = repr(exc)
        else:
            problem = "the topic is not listed or not described (Describe on it is needed)"
        if found is None:
            if not self._unknown_logged:
                self._unknown_logged = True
                log.warning(
                    f"cannot learn how many partitions {self.topic} has ({problem}); partials "
                    "and watermarks are not checked against it until it can",
                    extra={"fields": {"topic": self.topic, "known": self.count}},
                )
            return False
        changed = found != self.count
        if changed:
            log.info(
                f"events topic {self.topic} has {found} partitions",
                extra={"fields": {"topic": self.topic, "partitions": found}},
            )
        self.count = found
        return changed

    async def _ask(self, admin: AIOKafkaAdminClient) -> int | None:
        if self.topic not in await admin.list_topics():
            return None
        (described,) = await admin.describe_topics([self.topic])
        if described.get("error_code", 0) or not described.get("partitions"):
            return None
        return len(described["partitions"])

    async def refresh_if_due(self) -> None:
        """Ask again if the last answer is ``refresh_s`` old."""
        if self._asked_at is None or self._clock() - self._asked_at >= self._refresh_s:
            await self.refresh()

    async def recheck(self) -> bool:
        """A record named a partition beyond ``count``: ask again unless asked within
        ``recheck_s``; whether the count changed."""
        if self._asked_at is not None and self._clock() - self._asked_at < self._recheck_s:
            return False
        return await self.refresh()
