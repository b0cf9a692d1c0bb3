"""The secured broker: one real Kafka 4.x per session with SASL_SSL (SCRAM-SHA-512) and mTLS
listeners and the StandardAuthorizer on (tools/kafka_secure.py), started only by the tests
that ask for ``secure_kafka``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka_secure import SecureKafkaBroker
from tls_certs import CertificateAuthority, Issued

SCRAM_USER = "driftwire"
LEAST_USER = "driftwire-lp"  # no super user: exactly the ACLs the README lists
LEAST_PASSWORD = "SASLsentinel-least-8c3d"
# one more such user per other process kind, each granted only its own ACLs (same password)
PROCESS_USERS = {
    "bridge": "driftwire-lp-bridge",
    "baseline": "driftwire-lp-baseline",
    "producer": "driftwire-lp-producer",
    "producer-new": "driftwire-lp-producer-new",  # granted nothing but by one test
}
SCRAM_PASSWORD = "SASLsentinel-worker-5e1f0c"  # scanned for in every output
KEY_PASSWORD = "KEYPWsentinel-mtls-a9b2"  # the mTLS client key's password, scanned for too
CLIENT_DN = "CN=driftwire-client,O=driftwire tests"


@dataclass(frozen=True)
class SecureKafka:
    """Addresses and credentials of the secured test broker."""

    admin: str  # PLAINTEXT, principal ANONYMOUS (a super user): the tests' own door
    sasl_ssl: str
    mtls: str
    ca: Path
    client: Issued  # its key encrypted with KEY_PASSWORD
    other_ca: Path  # a CA that signed nothing the broker uses
    directory: Path
    broker: SecureKafkaBroker

    def sasl_settings(self, password_file: Path, **over: Any) -> dict[str, Any]:
        password_file.write_text(SCRAM_PASSWORD + "\n")
        return {
            "bootstrap_servers": self.sasl_ssl,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": SCRAM_USER,
            "sasl_password_file": str(password_file),
            "ssl_cafile": str(self.ca),
            **over,
        }

    def mtls_settings(self, password_file: Path, **over: Any) -> dict[str, Any]:
        password_file.write_text(KEY_PASSWORD + "\n")
        return {
            "bootstrap_servers": self.mtls,
            "security_protocol": "SSL",
            "ssl_cafile": str(self.ca),
            "ssl_certfile": str(self.client.cert),
            "ssl_keyfile": str(self.client.key),
            "ssl_password_file": str(password_file),
            **over,
        }


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    directory = tmp_path_factory.mktemp("secure-kafka")
    ca = CertificateAuthority.create(directory / "ca", "driftwire-test-ca")
    server = ca.issue("broker", hosts=("127.0.0.1",))  # not "localhost": a mismatch to test
    client = ca.issue("driftwire-client", client=True, key_password=KEY_PASSWORD)
    other = CertificateAuthority.create(directory / "other", "someone-else-ca")
    broker = SecureKafkaBroker(
        ca,
        server,
        scram_users={
            SCRAM_USER: SCRAM_PASSWORD,
            LEAST_USER: LEAST_PASSWORD,
            **dict.fromkeys(PROCESS_USERS.values(), LEAST_PASSWORD),
        },
        super_users=(f"User:{SCRAM_USER}", f"User:{CLIENT_DN}"),
    )
    try:
        broker.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start the secured Kafka test broker:\n{exc}", pytrace=False)
    try:
        yield SecureKafka(
            admin=broker.bootstrap_servers,
            sasl_ssl=broker.sasl_ssl_servers,
            mtls=broker.mtls_servers,
            ca=ca.cert,
            client=client,
            other_ca=other.cert,
            directory=directory,
            broker=broker,
        )
    finally:
        broker.stop()
