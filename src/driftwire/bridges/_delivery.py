"""HTTP delivery with retries: what every bridge target shares.

A request either succeeds (2xx), is refused (a 4xx other than 408 and 429: sending it again
cannot help, so it goes to the dead-letter topic at once), or fails in a way that may pass
(5xx, 408, 429, a timeout, a refused connection): retried with exponential backoff and
jitter, honouring ``Retry-After``, up to ``max_attempts``; then it is undeliverable.

Outbound safety: messages (logs, dead-letter headers) never contain the URL, a header value or
a request's declared secrets (for Slack the URL is the secret, for PagerDuty the routing key in
the body), even when a receiver or the HTTP library echoes them. Redirects are never followed
(a 3xx is refused: the credentials of the request would go along to wherever it points);
TLS certificates are verified (``bridges.ssl_cafile`` adds a CA); at most
:data:`MAX_RESPONSE_BYTES` of a response body are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from driftwire import _secrets

MAX_BODY_IN_MESSAGE = 300
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP POST a target wants made."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = field(default=(), repr=False)  # in the body, e.g. a routing key

    def __repr__(self) -> str:
        return f"Request(<url>, {len(self.body)} bytes)"

    def redactor(self) -> _secrets.Redactor:
        """Masks the URL, every header value but Content-Type, and the declared secrets."""
        values = [self.url, *self.secrets]
        values += [v for k, v in self.headers.items() if k.lower() != "content-type"]
        redactor = _secrets.Redactor(values)
        redactor.add(_secrets.known().values())
        return redactor


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
    redactor = request.redactor()
    last = ""
    status: int | None = None
    for attempt in range(1, policy.max_attempts + 1):
        if stop.is_set():
            raise Stopped
        retry_after: float | None = None
        answered = False  # the receiver answered this attempt (counted already)
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=dict(request.headers),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                status, answered = response.status, True
                if on_attempt is not None:
                    on_attempt(attempt, status)
                raw = await response.content.read(MAX_RESPONSE_BYTES)
                text = redactor.redact(raw.decode("utf-8", "replace"))[:MAX_BODY_IN_MESSAGE]
                if 200 <= status < 300:
                    return Outcome(True, attempt, status=status)
                last = f"HTTP {status} from {what}: {text}"
                if 300 <= status < 400:
                    last = (
                        f"HTTP {status} from {what}: a redirect, not followed (the request's "
                        "credentials would go along); configure the final URL"
                    )
                    return Outcome(False, attempt, "rejected", last, status)
                if 400 <= status < 500 and status not in (408, 429):
                    return Outcome(False, attempt, "rejected", last, status)
                retry_after = _retry_after(response.headers)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if on_attempt is not None and not answered:
                on_attempt(attempt, None)
            status = None
            detail = redactor.redact(f"{type(exc).__name__} talking to {what}: {exc}")
            last = detail[:MAX_BODY_IN_MESSAGE]
        if attempt == policy.max_attempts:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), policy.delay(attempt, retry_after))
            raise Stopped
    message = f"gave up after {policy.max_attempts} attempts; last: {last}"
    return Outcome(False, policy.max_attempts, "undeliverable", message, status)
