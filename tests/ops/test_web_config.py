"""``http.web_config_file``: parsing and validation, and the HTTP server it protects.

Every bad file is one :class:`ConfigError` line that names the key and the fix; the server
tests run the real aiohttp server with real certificates (tools/tls_certs.py) and a real
HTTPS client (urllib with the standard ssl module).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter
from tls_certs import CertificateAuthority, Issued

from driftwire.errors import ConfigError
from driftwire.ops.basic_auth import BasicAuth, basic_header
from driftwire.ops.config import load_settings
from driftwire.ops.health import HealthServer, Readiness
from driftwire.ops.web_config import TlsServerConfig, load_web_config
from driftwire.stages.detect.status_api import StatusApi

PASSWORD = "scrape-me-7"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, Issued, Issued]:
    ca = CertificateAuthority.create(tmp_path_factory.mktemp("pki"), "web-ca")
    server = ca.issue("web-server", hosts=("localhost", "127.0.0.1"))
    client = ca.issue("web-client", client=True)
    return ca, server, client


def write(tmp_path: Path, doc: Any, name: str = "web.yml") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


def error_of(path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    text = str(caught.value)
    assert "\n" not in text
    return text


# -- parsing --------------------------------------------------------------------------------


def test_a_full_file_is_read_with_paths_relative_to_it(
    tmp_path: Path, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    ca, server, _ = pki
    for issued in (server.cert, server.key, ca.cert):
        (tmp_path / issued.name).write_bytes(issued.read_bytes())
    doc = {
        "tls_server_config": {
            "cert_file": server.cert.name,
            "key_file": server.key.name,
            "client_ca_file": ca.cert.name,
            "min_version": "TLS13",
        },
        "basic_auth_users": {"prometheus": HASH, "alice": HASH},
    }
    web = load_web_config(write(tmp_path, doc))
    assert web is not None
    assert web.tls == TlsServerConfig(
        tmp_path / server.cert.name,
        tmp_path / server.key.name,
        tmp_path / ca.cert.name,
        "RequireAndVerifyClientCert",  # the default with a client CA, as exporter-toolkit's
        "TLS13",
    )
    assert web.context is not None
    assert web.context.verify_mode == ssl.CERT_REQUIRED
    assert web.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert dict(web.users) == {"prometheus": HASH.encode(), "alice": HASH.encode()}


def test_tls_only_and_an_empty_file(
    tmp_path: Path, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    _, server, _ = pki
    doc = {"tls_server_config": {"cert_file": str(server.cert), "key_file": str(server.key)}}
    web = load_web_config(write(tmp_path, doc))
    assert web is not None and web.tls is not None and dict(web.users) == {}
    assert web.tls.client_auth_type == "NoClientCert" and web.tls.min_version == "TLS12"
    assert web.context is not None and web.context.verify_mode == ssl.CERT_NONE
    empty = load_web_config(write(tmp_path, "", "empty.yml"))
    assert empty is not None and empty.tls is None and empty.context is None


def test_the_setting_is_a_path_not_a_file_to_inline(tmp_path: Path) -> None:
    path = write(tmp_path, {"basic_auth_users": {"p": HASH}})
    from_env = load_settings(None, env={"DRIFTWIRE_HTTP_WEB_CONFIG_FILE": path})
    assert from_env.http.web_config_file == path
    config = tmp_path / "driftwire.yaml"
    config.write_text(yaml.safe_dump({"http": {"web_config_file": path}}))
    assert load_settings(config, env={}).http.web_config_file == path
    assert load_settings(None, env={}).http.web_config_file is None


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"basic_auth_users": {"prom": "not-a-hash"}},
            "'basic_auth_users.prom in http.web_config_file {file}': not a bcrypt hash (",
        ),
        (  # the right shape, but a salt that bcrypt refuses
            {"basic_auth_users": {"prom": "$2b$12$" + "a" * 53}},
            "'basic_auth_users.prom in http.web_config_file {file}': not a bcrypt hash (",
        ),
        (
            {"basic_auth_users": {"a:b": HASH}},
            "'basic_auth_users.a:b in http.web_config_file {file}': a user name must be",
        ),
        (
            {"basic_auth_users": ["prom"]},
            "'basic_auth_users in http.web_config_file {file}': must be a mapping",
        ),
        (
            {"basic_auth_user": {"prom": HASH}},
            "'basic_auth_user in http.web_config_file {file}': unknown key (known keys here: "
            "basic_auth_users, tls_server_config)",
        ),
        (
            {"http_server_config": {"http2": True}},
            "'http_server_config in http.web_config_file {file}': not supported by driftwire "
            "(Prometheus' exporter-toolkit knows it) (remove it)",
        ),
        (
            {"tls_server_config": {"key_file": "server.key"}},
            "'tls_server_config.cert_file in http.web_config_file {file}': missing (",
        ),
        (
            {"tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key"}},
            "'tls_server_config.cert_file in http.web_config_file {file}': cannot read "
            "{dir}/missing.crt: No such file or directory (check the path and its permissions)",
        ),
        ("[1, 2]", "'http.web_config_file {file}': must hold a YAML mapping ("),
        ("basic_auth_users: {prom: [", "'http.web_config_file {file}': not valid YAML at line "),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key_and_the_fix(
    tmp_path: Path, doc: Any, expected: str
) -> None:
    path = write(tmp_path, doc)
    text = error_of(path)
    assert text.startswith("config error at " + expected.format(file=path, dir=tmp_path)), text
    assert "$2b$12$aaaa" not in text  # a hash is not echoed


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yml")
    assert error_of(missing) == (
        f"config error at 'http.web_config_file {missing}': cannot read it: "
        "No such file or directory (check the path and its permissions)"
    )


def test_bad_tls_material_is_one_line(
    tmp_path: Path, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    ca, server, client = pki
    tls = {"cert_file": str(server.cert), "key_file": str(client.key)}  # another key
    text = error_of(write(tmp_path, {"tls_server_config": tls}))
    assert "'tls_server_config in http.web_config_file" in text
    assert "cannot be used: KEY_VALUES_MISMATCH" in text, text
    encrypted = ca.issue("locked", hosts=("localhost",), key_password="pw")
    tls = {"cert_file": str(encrypted.cert), "key_file": str(encrypted.key)}
    text = error_of(write(tmp_path, {"tls_server_config": tls}))
    assert "cannot be used" in text and "unencrypted PEM key" in text, text
    tls = {"cert_file": str(server.cert), "key_file": str(server.key)}
    for extra, problem in [
        ({"client_auth_type": "RequireAndVerifyClientCert"}, "'tls_server_config.client_ca_file"),
        ({"client_auth_type": "RequireAnyClientCert"}, "accepts unverified client certificates"),
        ({"client_auth_type": "Sometimes"}, "unknown value 'Sometimes' (one of NoClientCert"),
        ({"min_version": "TLS14"}, "'tls_server_config.min_version in"),
        ({"min_version": "TLS13", "max_version": "TLS12"}, "TLS12 is below min_version TLS13"),
        ({"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}, "not supported by driftwire"),
        ({"client_ca_file": str(server.key)}, "cannot be used"),  # not a CA certificate
    ]:
        text = error_of(write(tmp_path, {"tls_server_config": {**tls, **extra}}))
        assert problem in text, (extra, text)


def test_config_check_the_worker_and_a_bridge_stop_on_a_bad_web_config_with_one_line(
    tmp_path: Path,
) -> None:
    web = write(tmp_path, {"basic_auth_users": {"prom": "plaintext-password"}})
    config = tmp_path / "driftwire.yaml"
    # no broker at this address: the web config is checked before any connection
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                "http": {"web_config_file": web},
                "bridges": {"webhook_url": "http://127.0.0.1:9/hook"},
            }
        )
    )
    for command in (
        ["config", "check", str(config)],
        ["worker", "--config", str(config)],
        ["bridge", "webhook", "--config", str(config)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "driftwire.cli.command", *command],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DRIFTWIRE_KAFKA_STARTUP_TIMEOUT_SECONDS": "0"},
            check=False,
        )
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert proc.stderr.splitlines() == [
            f"driftwire: config error at 'basic_auth_users.prom in http.web_config_file {web}': "
            "not a bcrypt hash (the value must be a bcrypt hash such as $2b$12$... : make one "
            "with `htpasswd -nBC 12 '' | tr -d ':\\n'` or `python -c 'import bcrypt; "
            'print(bcrypt.hashpw(b"PASSWORD", bcrypt.gensalt()).decode())\'`)'
        ], command
        assert "plaintext-password" not in proc.stdout + proc.stderr


# -- the verifier ---------------------------------------------------------------------------


def test_credentials_are_checked_once_then_remembered() -> None:
    slow = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12))  # ~0.3 s per check
    auth = BasicAuth({"prom": slow})
    good, wrong = basic_header("prom", PASSWORD), basic_header("prom", "nope")
    assert auth.cached(good) is None and auth.cached(wrong) is None
    assert auth.check(good) is True and auth.check(wrong) is False
    assert auth.cached(good) is True and auth.cached(wrong) is False
    started = time.perf_counter()
    assert all(auth.check(good) for _ in range(100))  # a 15 s scrape for 25 minutes
    assert time.perf_counter() - started < 0.1  # 100 bcrypt checks would take 30 s
    # an unknown user with a known user's password is refused (and costs a check too)
    assert auth.check(basic_header("eve", PASSWORD)) is False
    assert auth.check(basic_header("prom", "x" * 100)) is False  # over bcrypt's 72 bytes


def test_the_cache_is_bounded_and_holds_no_password() -> None:
    auth = BasicAuth({"prom": HASH.encode()}, cache_size=3)
    for n in range(10):
        auth.check(basic_header("prom", f"guess-{n}"))
    assert [auth.cached(basic_header("prom", f"guess-{n}")) for n in range(10)] == [None] * 7 + [
        False
    ] * 3
    assert b"guess" not in repr(vars(auth)).encode()


# -- the server -----------------------------------------------------------------------------


def fetch(
    url: str, *, header: str | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": header} if header else {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def client_context(ca: CertificateAuthority, cert: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


async def serve_and(web_path: str, calls: Any) -> Any:
    registry = CollectorRegistry()
    Counter("probe_total", "a metric to find on the page", registry=registry).inc()
    api = StatusApi(lambda: None, worker=lambda: {"stage": "profile"})
    server = HealthServer(registry, Readiness(), api.routes(), web_config=load_web_config(web_path))
    await server.start("127.0.0.1", 0)
    try:
        assert server.port is not None
        return await asyncio.to_thread(calls, server.port, server.scheme)
    finally:
        await server.stop()


def test_every_route_wants_a_user_over_tls(
    tmp_path: Path, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    ca, server, _ = pki
    doc = {
        "tls_server_config": {"cert_file": str(server.cert), "key_file": str(server.key)},
        "basic_auth_users": {"prometheus": HASH},
    }
    good = basic_header("prometheus", PASSWORD)
    paths = ["/metrics", "/healthz", "/readyz", "/api/v1/status", "/api/v1/alerts", "/nope"]

    def calls(port: int, scheme: str) -> dict[str, Any]:
        base = f"https://localhost:{port}"
        context = client_context(ca)
        out: dict[str, Any] = {"scheme": scheme}
        for path in paths:
            out[path] = [
                fetch(base + path, header=h, context=context)
                for h in (None, basic_header("prometheus", "wrong"), "Bearer x", good)
            ]
        try:
            fetch(f"http://127.0.0.1:{port}/metrics", header=good)
            out["plain"] = "answered"
        except (urllib.error.URLError, ConnectionError) as exc:
            out["plain"] = type(exc).__name__
        try:  # a client that does not trust the server's CA
            fetch(base + "/metrics", header=good, context=ssl.create_default_context())
            out["untrusted"] = "answered"
        except urllib.error.URLError as exc:
            out["untrusted"] = str(exc.reason)
        return out

    out = asyncio.run(serve_and(write(tmp_path, doc), calls))
    assert out["scheme"] == "https"
    for path in paths:
        refused, wrong, bearer, allowed = out[path]
        for code, headers, _ in (refused, wrong, bearer):
            assert code == 401, path
            assert headers["WWW-Authenticate"] == 'Basic realm="driftwire", charset="UTF-8"'
        expected = {"/nope": 404, "/readyz": 503, "/api/v1/status": 404, "/api/v1/alerts": 404}
        assert allowed[0] == expected.get(path, 200), (path, allowed)
    assert b"probe_total 1.0" in out["/metrics"][3][2]
    assert json.loads(out["/healthz"][3][2]) == {"status": "ok"}
    assert out["plain"] in ("RemoteDisconnected", "ConnectionResetError", "URLError"), out
    assert "CERTIFICATE_VERIFY_FAILED" in out["untrusted"]


def test_mtls_refuses_a_client_without_a_certificate_of_the_ca(
    tmp_path: Path, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    ca, server, client = pki
    stranger_ca = CertificateAuthority.create(tmp_path / "other", "other-ca")
    stranger = stranger_ca.issue("stranger", client=True)
    tls = {
        "cert_file": str(server.cert),
        "key_file": str(server.key),
        "client_ca_file": str(ca.cert),
    }

    def calls(port: int, scheme: str) -> list[object]:
        url = f"https://localhost:{port}/healthz"
        out: list[object] = []
        for cert in (client, None, stranger):
            try:
                out.append(fetch(url, context=client_context(ca, cert))[0])
            except (urllib.error.URLError, ConnectionError, ssl.SSLError) as exc:
                out.append(type(exc).__name__)
        return out

    allowed, without, foreign = asyncio.run(
        serve_and(write(tmp_path, {"tls_server_config": tls}), calls)
    )
    assert allowed == 200  # no basic_auth_users: TLS alone
    # TLS 1.3 refuses the client after the handshake: the connection closes unanswered
    refused = {"RemoteDisconnected", "ConnectionResetError", "SSLError", "URLError"}
    assert without in refused and foreign in refused, (without, foreign)


def test_basic_auth_without_tls_and_the_header_format(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = {"basic_auth_users": {"prometheus": HASH}}

    def calls(port: int, scheme: str) -> list[int]:
        url = f"http://127.0.0.1:{port}/healthz"
        token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        headers = [f"Basic {token}", f"basic {token}", f"Basic {token}x", "Basic", ""]
        return [fetch(url, header=h)[0] for h in headers] + [len(scheme)]

    with caplog.at_level(logging.WARNING, logger="driftwire.ops.health"):
        codes = asyncio.run(serve_and(write(tmp_path, doc), calls))
    assert codes == [200, 200, 401, 401, 401, 4]
    assert [r.getMessage() for r in caplog.records] == [
        "basic_auth_users without tls_server_config (http.web_config_file): passwords "
        "cross the network readable"
    ]


def test_the_readme_example_loads(
    tmp_path: Path, pki: tuple[CertificateAuthority, Issued, Issued]
) -> None:
    ca, server, _ = pki
    readme = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    block = readme.split("```yaml\n# web.yml\n", 1)[1].split("```", 1)[0]
    for name, issued in [
        ("/etc/driftwire/tls/server.crt", server.cert),
        ("/etc/driftwire/tls/server.key", server.key),
        ("/etc/driftwire/tls/clients-ca.pem", ca.cert),
    ]:
        assert name in block
        block = block.replace(name, str(issued))
    web = load_web_config(write(tmp_path, block))
    assert web is not None and web.tls is not None
    assert web.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert list(web.users) == ["prometheus"]


def served_name(port: int, ca: CertificateAuthority) -> str:
    """The common name of the certificate the server presents to a new connection."""
    context = client_context(ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
        return str(subject["commonName"])


def test_a_renewed_certificate_is_served_without_a_restart(
    tmp_path: Path,
    pki: tuple[CertificateAuthority, Issued, Issued],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca, first, _ = pki
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    renewed = ca.issue("web-server-renewed", hosts=("localhost", "127.0.0.1"))
    web = load_web_config(
        write(tmp_path, {"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}})
    )

    def wait_for(name: str, port: int) -> str:
        deadline = time.monotonic() + 10
        seen = served_name(port, ca)
        while seen != name and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = served_name(port, ca)
        return seen

    async def scenario() -> list[str]:
        server = HealthServer(
            CollectorRegistry(), Readiness(), web_config=web, certificate_check_s=0.05
        )
        await server.start("127.0.0.1", 0)
        assert server.port is not None
        port = server.port
        try:
            seen = [await asyncio.to_thread(served_name, port, ca)]
            key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n")  # half-written renewal
            await asyncio.sleep(0.3)
            seen.append(await asyncio.to_thread(served_name, port, ca))  # still the old pair
            key.write_bytes(renewed.key.read_bytes())
            cert.write_bytes(renewed.cert.read_bytes())
            seen.append(await asyncio.to_thread(wait_for, "web-server-renewed", port))
            return seen
        finally:
            await server.stop()

    with caplog.at_level(logging.INFO, logger="driftwire.ops.health"):
        seen = asyncio.run(scenario())
    assert seen == ["web-server", "web-server", "web-server-renewed"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("changed but cannot be used" in m for m in messages), messages
    assert "TLS certificate of the HTTP endpoints reloaded" in messages
