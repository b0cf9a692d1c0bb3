"""A secured single-node Kafka 4.x for tests: SASL_SSL (SCRAM-SHA-512) and mTLS listeners, with
the StandardAuthorizer on.

Listeners, each on a free loopback port:

* ``PLAINTEXT``: the inter-broker listener and the tests' own admin door (its principal,
  ``User:ANONYMOUS``, is a super user, so fixtures can create topics and ACLs);
* ``SASL_SSL``: SCRAM-SHA-512 over TLS; the credentials are written at format time
  (``StorageTool format --add-scram``), so no client can sign in before they exist;
* ``SSL``: TLS with client certificates required (mTLS); the principal is the certificate's
  distinguished name (``User:CN=...,O=driftwire tests``);
* ``CONTROLLER``: KRaft.

The TLS material comes from :mod:`tls_certs` (a throwaway CA, a server certificate for
``127.0.0.1`` only, client certificates). Kafka reads it as PEM (``ssl.keystore.type=PEM``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kafka_broker import KafkaBroker, _free_ports
from tls_certs import CertificateAuthority, Issued

__all__ = ["SecureKafkaBroker"]

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


class SecureKafkaBroker(KafkaBroker):
    """A broker whose SASL_SSL and mTLS listeners authenticate, and whose authorizer decides.

    ``scram_users``: name -> password, created at format time. ``super_users``: principals
    (``User:NAME``) that every ACL check lets through; anyone else needs ACLs.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        server: Issued,
        *,
        scram_users: Mapping[str, str],
        super_users: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ca, self.server = ca, server
        self.scram_users = dict(scram_users)
        self.super_users = ("User:ANONYMOUS", *super_users)
        self.sasl_port: int | None = None
        self.mtls_port: int | None = None

    @property
    def sasl_ssl_servers(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def mtls_servers(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    def format_arguments(self) -> tuple[str, ...]:
        args: list[str] = []
        for name, password in self.scram_users.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return tuple(args)

    def _write_config(self, workdir: Path) -> tuple[Path, Path]:
        self.sasl_port, self.mtls_port = _free_ports(2)
        plain, controller = self.port, self.controller_port
        self.extra_properties.update(
            {
                "listeners": (
                    f"PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{controller},"
                    f"SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.mtls_port}"
                ),
                "advertised.listeners": (
                    f"PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{self.sasl_port},"
                    f"SSL://127.0.0.1:{self.mtls_port}"
                ),
                "listener.security.protocol.map": (
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
                ),
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_LOGIN,
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.server.bundle),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.ca.cert),
                "listener.name.ssl.ssl.client.auth": "required",
                "ssl.endpoint.identification.algorithm": "",
                "authorizer.class.name": AUTHORIZER,
                "super.users": ";".join(self.super_users),
                "allow.everyone.if.no.acl.found": "false",
            }
        )
        return super()._write_config(workdir)
