"""The web configuration file of the HTTP endpoints: TLS and basic auth, as Prometheus has it.

``http.web_config_file`` names a YAML file in the format of the Prometheus exporter-toolkit
(the ``--web.config.file`` of Prometheus and its exporters), so one file serves both::

    tls_server_config:
      cert_file: server.crt          # PEM; relative paths are relative to this file
      key_file: server.key           # PEM, not encrypted
      client_ca_file: clients-ca.pem # optional: mTLS
      client_auth_type: RequireAndVerifyClientCert  # the default when client_ca_file is set
      min_version: TLS12             # the default; TLS10 .. TLS13
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash (htpasswd -nBC 12 '' | tr -d ':\\n')

Either part may be left out. Everything is checked when the file is loaded, at start-up: an
unreadable file, a missing or mismatched certificate, an unknown key or a value that is not a
bcrypt hash is one :class:`ConfigError` that names the key and the fix.

>>> import tempfile, bcrypt
>>> hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = Path(tmp) / "web.yml"
...     _ = path.write_text(f"basic_auth_users:\\n  prom: {hashed}\\n")
...     web = load_web_config(str(path))
>>> sorted(web.users), web.tls is None
(['prom'], True)
>>> load_web_config(None) is None
True
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from driftwire.errors import ConfigError

__all__ = ["SETTING", "CertificateReload", "TlsServerConfig", "WebConfig", "load_web_config"]

#: The setting that names the file.
SETTING = "http.web_config_file"

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: exporter-toolkit's client_auth_type values that verify the client's certificate.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type"}
_TLS_KEYS |= {"min_version", "max_version"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
# keys exporter-toolkit knows that driftwire does not implement
_NOT_BUILT = {
    "http_server_config",
    "rate_limit",
    "cert",
    "key",
    "client_ca",
    "client_allowed_sans",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
}
# $2a$/$2b$/$2y$, a cost of 04..31, 22 characters of salt and 31 of hash (bcrypt's base64)
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_HASH_HINT = (
    "the value must be a bcrypt hash such as $2b$12$... : make one with "
    "`htpasswd -nBC 12 '' | tr -d ':\\n'` or "
    "`python -c 'import bcrypt; print(bcrypt.hashpw(b\"PASSWORD\", bcrypt.gensalt()).decode())'`"
)


@dataclass(frozen=True)
class TlsServerConfig:
    """``tls_server_config``: the server's certificate and, for mTLS, the clients' CA."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A server context; raises :class:`ssl.SSLError` or :class:`OSError` on bad files."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        # an encrypted key fails here instead of prompting on the terminal
        context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        return context


class CertificateReload:
    """Loads renewed certificate files into the running server's TLS context.

    :meth:`check` compares the files' modification times and sizes with the last load; when
    one changed, the server certificate and key are loaded again into the same context (new
    connections get them, open ones keep theirs), and the client CA file too (a CA added to
    it is trusted from then on; a removed one stays trusted until a restart). A pair that
    cannot be loaded (a key written before its certificate, say) leaves the old one in place
    and is tried again at the next check.
    """

    def __init__(self, tls: TlsServerConfig, context: ssl.SSLContext) -> None:
        self._tls = tls
        self._context = context
        self._stamps = self._stamp()

    def _files(self) -> list[Path]:
        files = [self._tls.cert_file, self._tls.key_file]
        return files + ([self._tls.client_ca_file] if self._tls.client_ca_file else [])

    def _stamp(self) -> list[tuple[int, int] | None]:
        stamps: list[tuple[int, int] | None] = []
        for path in self._files():
            try:
                info = path.stat()
                stamps.append((info.st_mtime_ns, info.st_size))
            except OSError:
                stamps.append(None)
        return stamps

    def check(self) -> str | None:
        """None when nothing changed; ``"reloaded"``; or why the new files cannot be used."""
        stamps = self._stamp()
        if stamps == self._stamps:
            return None
        try:
            self._context.load_cert_chain(
                self._tls.cert_file, self._tls.key_file, password=_no_password
            )
            if self._tls.client_ca_file is not None:
                self._context.load_verify_locations(cafile=self._tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            return str(getattr(exc, "reason", None) or exc.strerror or type(exc).__name__)
        self._stamps = stamps
        return "reloaded"


@dataclass(frozen=True)
class WebConfig:
    """The parsed file: ``tls`` (None: plain HTTP) and ``users`` (empty: no basic auth)."""

    path: Path
    tls: TlsServerConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)


def _no_password() -> bytes:
    return b""


class _File:
    """Error lines for one web configuration file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str | None, problem: str, fix: str | None = None) -> ConfigError:
        where = f"{SETTING} {self.path}" if key is None else f"{key} in {SETTING} {self.path}"
        return ConfigError(where, problem, fix)

    def resolve(self, value: object, key: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a file path")
        path = Path(value)
        return path if path.is_absolute() else self.path.parent / path

    def readable(self, value: object, key: str) -> Path:
        path = self.resolve(value, key)
        try:
            path.read_bytes()
        except OSError as exc:
            raise self.error(
                key, f"cannot read {path}: {exc.strerror}", "check the path and its permissions"
            ) from None
        return path


def _check_keys(file: _File, doc: Mapping[Any, Any], known: set[str], prefix: str) -> None:
    for key in doc:
        name = f"{prefix}{key}"
        if key in _NOT_BUILT:
            raise file.error(
                name,
                "not supported by driftwire (Prometheus' exporter-toolkit knows it)",
                "remove it",
            )
        if key not in known:
            raise file.error(name, "unknown key", f"known keys here: {', '.join(sorted(known))}")


def _tls(file: _File, doc: object) -> TlsServerConfig:
    key = "tls_server_config"
    if not isinstance(doc, Mapping):
        raise file.error(key, "must be a mapping with cert_file and key_file")
    _check_keys(file, doc, _TLS_KEYS, key + ".")
    for needed, what in (("cert_file", "certificate"), ("key_file", "private key")):
        if not doc.get(needed):
            raise file.error(f"{key}.{needed}", "missing", f"name the server's PEM {what} file")
    cert = file.readable(doc["cert_file"], f"{key}.cert_file")
    private = file.readable(doc["key_file"], f"{key}.key_file")
    ca = doc.get("client_ca_file")
    client_ca = file.readable(ca, f"{key}.client_ca_file") if ca else None
    auth = doc.get("client_auth_type") or (
        "RequireAndVerifyClientCert" if client_ca else "NoClientCert"
    )
    if auth in _UNVERIFIED_CLIENT_AUTH:
        raise file.error(
            f"{key}.client_auth_type",
            f"{auth} accepts unverified client certificates: not supported",
            "use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file",
        )
    if auth not in CLIENT_AUTH_TYPES:
        raise file.error(
            f"{key}.client_auth_type",
            f"unknown value {auth!r}",
            f"one of {', '.join(CLIENT_AUTH_TYPES)}",
        )
    if auth != "NoClientCert" and client_ca is None:
        raise file.error(
            f"{key}.client_ca_file", f"client_auth_type {auth} needs it", "name the clients' CA"
        )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", None)):
        value = doc.get(name, default)
        if value is not None and value not in TLS_VERSIONS:
            raise file.error(
                f"{key}.{name}", f"unknown value {value!r}", f"one of {', '.join(TLS_VERSIONS)}"
            )
        versions[name] = value
    low, high = versions["min_version"] or "TLS12", versions["max_version"]
    if high is not None and TLS_VERSIONS[high] < TLS_VERSIONS[low]:
        raise file.error(f"{key}.max_version", f"{high} is below min_version {low}")
    return TlsServerConfig(cert, private, client_ca, auth, low, high)


def _is_bcrypt(hashed: str) -> bool:
    """Whether bcrypt can check passwords against ``hashed`` (tried at cost 4: milliseconds)."""
    if not _BCRYPT.fullmatch(hashed):
        return False
    cheap = hashed[:4] + "04" + hashed[6:]  # the salt is what bcrypt may refuse
    try:
        bcrypt.checkpw(b"", cheap.encode())
    except ValueError:
        return False
    return True


def _users(file: _File, doc: object) -> dict[str, bytes]:
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise file.error("basic_auth_users", "must be a mapping of user name to bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in doc.items():
        key = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise file.error(key, "a user name must be a non-empty string without ':'")
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            raise file.error(key, "not a bcrypt hash", _HASH_HINT)  # the value is not echoed
        users[user] = hashed.encode()
    return users


def load_web_config(path: str | None) -> WebConfig | None:
    """The web configuration ``path`` names (None: no file, plain HTTP without auth).

    Raises :class:`ConfigError` (one line: the key, the file, the fix) on any problem.
    """
    if path is None:
        return None
    file = _File(Path(path))
    try:
        text = file.path.read_text()
    except OSError as exc:
        raise file.error(
            None, f"cannot read it: {exc.strerror}", "check the path and its permissions"
        ) from None
    except UnicodeDecodeError:
        raise file.error(None, "not a text file", "it must be YAML") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise file.error(None, f"not valid YAML{at}", "fix the YAML syntax") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise file.error(
            None, "must hold a YAML mapping", "keys: tls_server_config, basic_auth_users"
        )
    _check_keys(file, doc, _TOP_KEYS, "")
    tls = _tls(file, doc["tls_server_config"]) if doc.get("tls_server_config") else None
    context = None
    if tls is not None:
        try:
            context = tls.ssl_context()
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            raise file.error(
                "tls_server_config",
                f"cert_file, key_file or client_ca_file cannot be used: {reason}",
                "give a PEM certificate, its unencrypted PEM key and a PEM CA file",
            ) from None
    return WebConfig(file.path, tls, _users(file, doc.get("basic_auth_users")), context)
