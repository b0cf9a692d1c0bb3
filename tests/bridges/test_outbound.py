"""The bridges' outbound HTTP against real local servers: certificates verified (a private CA
through ``bridges.ssl_cafile``), no redirect followed with the request's credentials, an answer
read only up to its cap."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from tls_certs import CertificateAuthority

from driftwire.bridges._delivery import MAX_RESPONSE_BYTES, Outcome, Request, RetryPolicy, post
from driftwire.bridges._shell import https_context

POLICY = RetryPolicy(max_attempts=2, initial_s=0.01, max_s=0.02, timeout_s=3.0)
TOKEN = "Bearer outbound-sentinel-41c9"


@contextlib.asynccontextmanager
async def server(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _post(url: str, context: ssl.SSLContext | None = None) -> Outcome:
    connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
    async with aiohttp.ClientSession(connector=connector) as session:
        request = Request(url, b"{}", {"Authorization": TOKEN, "Content-Type": "application/json"})
        return await post(session, request, POLICY, asyncio.Event(), what="webhook")


def test_a_redirect_is_refused_and_the_credentials_stay_home() -> None:
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=200)

    async def scenario() -> None:
        other = web.Application()
        other.router.add_post("/collect", elsewhere)
        async with server(other) as attacker:
            redirecting = web.Application()

            async def hook(_: web.Request) -> web.Response:
                raise web.HTTPTemporaryRedirect(f"{attacker}/collect")

            redirecting.router.add_post("/hook", hook)
            async with server(redirecting) as base:
                outcome = await _post(f"{base}/hook")
        assert outcome.ok is False and outcome.reason == "rejected"
        assert outcome.attempts == 1 and outcome.status == 307
        assert "redirect, not followed" in outcome.message
        assert seen == []

    asyncio.run(scenario())


def test_an_endless_answer_is_read_only_up_to_the_cap() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=400)
        await response.prepare(request)
        chunk = (TOKEN + " ") * 1000
        with contextlib.suppress(ConnectionError):
            while True:  # until the client hangs up
                await response.write(chunk.encode())
        return response

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/hook", endless)
        async with server(app) as base:
            started = time.monotonic()
            outcome = await _post(f"{base}/hook")
            elapsed = time.monotonic() - started
        assert outcome.reason == "rejected" and outcome.status == 400
        assert elapsed < POLICY.timeout_s  # read the cap, not the stream
        message = outcome.message
        assert len(message) <= 330 and "outbound-sentinel" not in message

    assert MAX_RESPONSE_BYTES == 64 * 1024
    asyncio.run(scenario())


def test_https_receivers_are_verified_and_a_private_ca_can_be_added(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca", "private-ca")
    cert = ca.issue("receiver", hosts=("127.0.0.1",))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert.cert, cert.key)

    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=202)

    async def scenario() -> tuple[Outcome, Outcome]:
        app = web.Application()
        app.router.add_post("/hook", ok)
        async with server(app, tls) as base:
            trusted = await _post(f"{base}/hook", https_context(str(ca.cert)))
            untrusted = await _post(f"{base}/hook", https_context(None))
        return trusted, untrusted

    trusted, untrusted = asyncio.run(scenario())
    assert trusted.ok is True
    assert untrusted.ok is False and untrusted.reason == "undeliverable"
    assert "certificate verify failed" in untrusted.message
