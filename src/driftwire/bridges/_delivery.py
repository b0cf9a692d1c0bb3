"""HTTP delivery with retries: what every bridge target shares.

A request either succeeds (2xx), is refused (a 4xx other than 408 and 429: sending it again
cannot help, so it goes to the dead-letter topic at once), or fails in a way that may pass
(5xx, 408, 429, a timeout, a refused connection): retried with exponential backoff and
jitter, honouring ``Retry-After``, up to ``max_attempts``; then it is undeliverable. Messages
never contain the URL: for Slack and PagerDuty-style receivers the URL is the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

MAX_BODY_IN_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP POST a target wants made."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 30.0
    timeout_s: float = 10.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = min(self.max_s, self.initial_s * 2.0 ** (attempt - 1))
        backoff *= random.uniform(0.5, 1.0)  # jitter: receivers recovering are not stampeded
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_s))
        return backoff

    @property
    def budget_s(self) -> float:
        """The longest one delivery can take."""
        return self.max_attempts * (self.timeout_s + self.max_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """``ok``, or why not: ``reason`` is ``rejected`` or ``undeliverable``."""

    ok: bool
    attempts: int
    reason: str = ""
    message: str = ""
    status: int | None = None


class Stopped(Exception):
    """The bridge is stopping: the delivery was abandoned (and is not committed)."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    return None


async def post(
    session: aiohttp.ClientSession,
    request: Request,
    policy: RetryPolicy,
    stop: asyncio.Event,
    *,
    what: str,
    on_attempt: Callable[[int, int | None], None] | None = None,
) -> Outcome:
    """POST ``request`` with retries; raises :class:`Stopped` if ``stop`` is set meanwhile.

    ``on_attempt(attempt, status)`` is called after every attempt (``status`` None: a timeout
    or a connection error), for metrics and liveness.
    """
    timeout = aiohttp.ClientTimeout(total=policy.timeout_s)
    last = ""
    status: int | None = None
    for attempt in range(1, policy.max_attempts + 1):
        if stop.is_set():
            raise Stopped
        retry_after: float | None = None
        answered = False  # the receiver answered this attempt (counted already)
        try:
            async with session.post(
                request.url, data=request.body, headers=dict(request.headers), timeout=timeout
            ) as response:
                status, answered = response.status, True
                if on_attempt is not None:
                    on_attempt(attempt, status)
                text = (await response.text(errors="replace"))[:MAX_BODY_IN_MESSAGE]
                if 200 <= status < 300:
                    return Outcome(True, attempt, status=status)
                last = f"HTTP {status} from {what}: {text}"
                if 400 <= status < 500 and status not in (408, 429):
                    return Outcome(False, attempt, "rejected", last, status)
                retry_after = _retry_after(response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if on_attempt is not None and not answered:
                on_attempt(attempt, None)
            status = None
            last = f"{type(exc).__name__} talking to {what}: {exc}"[:MAX_BODY_IN_MESSAGE]
        if attempt == policy.max_attempts:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), policy.delay(attempt, retry_after))
            raise Stopped
    message = f"gave up after {policy.max_attempts} attempts; last: {last}"
    return Outcome(False, policy.max_attempts, "undeliverable", message, status)
