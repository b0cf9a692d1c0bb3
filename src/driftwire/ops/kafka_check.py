"""Before anything starts: can this process reach and sign in to Kafka with its settings?

One connection per bootstrap address with exactly the security settings the clients will use
(TLS context, SASL mechanism and credentials). What goes wrong is named in one line, with the
key to fix, and ends start-up at once when retrying cannot help: a wrong password, a
certificate the client does not trust, one that has expired or names another host, a client
certificate the broker refuses, a listener that does not speak TLS. A network failure (refused,
unreachable, timed out) is retried with backoff for ``kafka.startup_timeout_seconds``, since a
broker that is starting will answer soon. (aiokafka itself logs such problems and retries or
raises a bare "Unable to bootstrap", without saying which.)

>>> describe(ConnectionRefusedError(111, "refused"), "b:9093", "SASL_SSL").retriable
True
>>> describe(ConnectionResetError(), "b:9092", "SSL").kind
'no_tls'
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from driftwire.errors import AuthorizationError, BrokerSetupError, ConfigError, TransportError
from driftwire.ops.config import KafkaSettings, Settings, secret

__all__ = ["Failure", "authorization_problem", "check_kafka", "describe", "setup_problem"]

X509_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED
X509_NOT_YET_VALID = 9
X509_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True)
class Failure:
    """Why one connection attempt failed; ``retriable`` for network trouble only."""

    kind: str
    message: str
    retriable: bool = False

    def __str__(self) -> str:
        return self.message


def _ssl_failure(exc: BaseException, address: str, protocol: str) -> Failure | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, detail = exc.verify_code, exc.verify_message
        if code == X509_HOSTNAME_MISMATCH or "Hostname mismatch" in str(exc):
            return Failure(
                "hostname",
                f"the certificate of {address} does not name the host connected to ({detail}); "
                "use a bootstrap address the certificate lists (or, not recommended, set "
                "kafka.ssl_check_hostname: false)",
            )
        if code in (X509_EXPIRED, X509_NOT_YET_VALID):
            return Failure(
                "expired",
                f"the certificate of {address} is not valid now ({detail}); the broker needs a "
                "renewed certificate",
            )
        return Failure(
            "untrusted",
            f"the certificate of {address} is not trusted ({detail}); set kafka.ssl_cafile to "
            "the CA that signed the broker's certificate",
        )
    text = str(exc)
    if "BAD_CERTIFICATE" in text or "CERTIFICATE_REQUIRED" in text or "UNKNOWN_CA" in text:
        return Failure(
            "client_certificate",
            f"{address} refused our client certificate (mTLS): set kafka.ssl_certfile and "
            "kafka.ssl_keyfile to a certificate that the broker's truststore accepts",
        )
    tls_refused = isinstance(exc, ConnectionResetError) or (
        isinstance(exc, ssl.SSLError)
        and any(s in text for s in ("WRONG_VERSION_NUMBER", "record layer", "UNEXPECTED_EOF"))
    )
    if tls_refused and protocol.endswith("SSL"):
        return Failure(
            "no_tls",
            f"{address} closed the connection during the TLS handshake: it is not a TLS "
            f"listener (kafka.security_protocol is {protocol}; use the broker's SSL or SASL_SSL "
            "listener, or PLAINTEXT for a plaintext one)",
        )
    return None


def describe(exc: BaseException, address: str, protocol: str, user: str | None = None) -> Failure:
    """The one-line reason for ``exc`` raised while connecting to ``address``."""
    from aiokafka import errors

    causes = [exc, exc.__cause__, exc.__context__]
    for cause in causes:
        if cause is not None and (found := _ssl_failure(cause, address, protocol)):
            return found
    if isinstance(exc, errors.SaslAuthenticationFailed | errors.IllegalSaslStateError):
        who = f" for user {user!r}" if user else ""
        return Failure(
            "authentication",
            f"{address} refused the SASL sign-in{who}: wrong username or password, or a "
            "mechanism the user has no credentials for (kafka.sasl_username, "
            "kafka.sasl_password[_FILE], kafka.sasl_mechanism)",
        )
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        return Failure(
            "mechanism",
            f"{address} does not offer kafka.sasl_mechanism on this listener ({exc})",
        )
    if isinstance(exc, OSError | TimeoutError | errors.KafkaConnectionError):
        reason = str(exc) or type(exc).__name__
        return Failure("network", f"cannot reach {address} ({reason})", retriable=True)
    return Failure("other", f"{address}: {type(exc).__name__}: {exc}")


def _principal(kafka: KafkaSettings) -> str:
    if kafka.security_protocol.startswith("SASL"):
        return f"User:{kafka.sasl_username}"
    if kafka.security_protocol == "SSL" and kafka.ssl_certfile:
        return "the principal of kafka.ssl_certfile"
    return "User:ANONYMOUS"


def _names(arg: object) -> list[str]:
    if isinstance(arg, set | frozenset | list | tuple):
        return sorted(str(a) for a in arg)
    return [str(arg)]


def authorization_problem(
    exc: BaseException, settings: Settings, topic_needs: Mapping[str, str] | None = None
) -> str | None:
    """One line naming the missing permission, if ``exc`` is the broker refusing one.

    ``topic_needs`` maps the process's topics to what it needs on each (``"Write and
    Describe"``); the worker's topics by default.
    """
    from aiokafka import errors

    who = _principal(settings.kafka)
    see = "(the ACL table in docs/security.md lists them all)"
    cause: BaseException | None = exc
    while cause is not None:  # a stage may wrap it: the detect stage's Faust app does
        if isinstance(cause, AuthorizationError):
            return f"Kafka: {who} is not authorized: it needs {cause.needs} {see}"
        cause = cause.__cause__
    t = settings.topics
    needs = topic_needs or {
        t.events: "Read and Describe",
        t.dead_letter_topic: "Write and Describe",
        t.partials: "Write, Read and Describe",
        t.baselines: "Read and Describe",
        t.alerts: "Write and Describe",
    }
    if isinstance(exc, errors.TopicAuthorizationFailedError):
        names = _names(exc.args[0]) if exc.args else ["?"]
        wanted = "; ".join(f"{needs.get(n, 'access')} on topic {n}" for n in names)
        return f"Kafka: {who} is not authorized: it needs {wanted} {see}"
    if isinstance(exc, errors.GroupAuthorizationFailedError):
        group = ", ".join(_names(exc.args[0])) if exc.args else "?"
        return f"Kafka: {who} is not authorized: it needs Read on group {group} {see}"
    if isinstance(exc, errors.ClusterAuthorizationFailedError):
        writes = "; ".join(f"{w} on topic {name}" for name, w in needs.items() if "Write" in w)
        if writes:
            # the usual cause since Kafka 2.8: a principal that may write to no topic is
            # refused the idempotent producer's id (InitProducerId) before any topic is named
            return (
                f"Kafka: {who} is not authorized: it needs {writes} (the broker refuses a "
                "producer its id while it may write to no topic), or Create for the topics it "
                f"creates (pre-create them and set topics.create: false) {see}"
            )
        return (
            f"Kafka: {who} is not authorized for a cluster operation: creating topics (pre-create "
            "them and set topics.create: false, or grant Create) or, on a broker before Kafka "
            f"2.8, the idempotent producer (grant IdempotentWrite on the cluster) {see}"
        )
    if isinstance(exc, errors.TransactionalIdAuthorizationFailed):
        prefix = f"{settings.consumer.group_id}-eos-"
        return (
            f"Kafka: {who} is not authorized: it needs Write and Describe on transactional id "
            f"prefix {prefix} (stage 1's exactly-once producers): grant them, or set "
            f"processing.guarantee: at_least_once {see}"
        )
    return None


def setup_problem(exc: BaseException) -> str | None:
    """The one line for a broker that lacks what the settings need (no transaction coordinator).

    >>> setup_problem(BrokerSetupError("Kafka: no coordinator: set x"))
    'Kafka: no coordinator: set x'
    >>> setup_problem(ValueError("other")) is None
    True
    """
    return str(exc) if isinstance(exc, BrokerSetupError) else None


async def _connect_once(kafka: KafkaSettings, host: str, port: int, context: object) -> None:
    from aiokafka.conn import create_conn

    conn = await create_conn(
        host,
        port,
        client_id=kafka.client_id,
        request_timeout_ms=10_000,
        ssl_context=context,
        security_protocol=kafka.security_protocol,
        sasl_mechanism=kafka.sasl_mechanism or "PLAIN",
        sasl_plain_username=kafka.sasl_username,
        sasl_plain_password=secret(kafka.sasl_password),
    )
    conn.close()


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    found = []
    for item in (p.strip() for p in bootstrap.split(",")):
        host, _, port = item.rpartition(":")
        if not item or not host or not port.isdigit():
            raise ConfigError(
                "kafka.bootstrap_servers", f"{item!r} is not host:port", "e.g. broker:9093"
            )
        found.append((host.strip("[]"), int(port)))
    return found


def _tls_context(kafka: KafkaSettings) -> object:
    try:
        return kafka.ssl_context() if kafka.security_protocol.endswith("SSL") else None
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(
            "kafka.ssl_cafile/ssl_certfile/ssl_keyfile",
            f"cannot load the TLS files: {reason}",
            "check the paths, and kafka.ssl_password[_FILE] for an encrypted key",
        ) from None


async def try_connect(kafka: KafkaSettings) -> list[Failure]:
    """One connection and sign-in attempt per bootstrap address: ``[]`` once one succeeds,
    else the network failures (worth a retry); a sign-in or TLS failure raises
    :class:`TransportError` at once (:class:`ConfigError` for unreadable TLS files)."""
    context = _tls_context(kafka)
    failures: list[Failure] = []
    for host, port in _addresses(kafka.bootstrap_servers):
        try:
            await _connect_once(kafka, host, port, context)
            return []
        except Exception as exc:
            address = f"{host}:{port}"
            failure = describe(exc, address, kafka.security_protocol, kafka.sasl_username)
            if not failure.retriable:
                raise TransportError(f"Kafka: {failure}", retriable=False) from None
            failures.append(failure)
    return failures


async def check_kafka(
    kafka: KafkaSettings,
    *,
    retry_s: float | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Return once one bootstrap address accepts a connection and sign-in; else raise
    :class:`TransportError` with the reason (:class:`ConfigError` for unreadable TLS files)."""
    budget = kafka.startup_timeout_seconds if retry_s is None else retry_s
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    delay = 0.5
    while True:
        failures = await try_connect(kafka)
        if not failures:
            return
        if loop.time() + delay > deadline:
            reasons = "; ".join(str(f) for f in failures)
            raise TransportError(
                f"Kafka: no bootstrap server answered within {budget:g} s: {reasons} "
                "(kafka.bootstrap_servers, kafka.startup_timeout_seconds)"
            ) from None
        await sleep(delay)
        delay = min(delay * 2, 10.0)
