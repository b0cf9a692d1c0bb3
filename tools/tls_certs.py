"""Throwaway TLS material for tests: a CA, server and client certificates, as PEM files.

Made with the ``cryptography`` package (a dev dependency); EC P-256 keys, so generating a set
takes milliseconds. Nothing here is fit for production: the CA key sits next to its
certificate in a temporary directory.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     ca = CertificateAuthority.create(Path(tmp), "test-ca")
...     server = ca.issue("server", hosts=("localhost", "127.0.0.1"))
...     server.cert.exists() and server.key.exists() and ca.cert.exists()
True
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "Issued"]


@dataclass(frozen=True)
class Issued:
    """PEM files of one certificate: ``cert``, ``key`` (PKCS#8), ``bundle`` (key + cert)."""

    name: str
    cert: Path
    key: Path
    bundle: Path
    key_password: str | None = None


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "driftwire tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey, password: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA in ``directory`` that issues server and client certificates."""

    directory: Path
    cert: Path
    _key: ec.EllipticCurvePrivateKey
    _certificate: x509.Certificate

    @classmethod
    def create(
        cls, directory: Path, common_name: str = "driftwire-test-ca"
    ) -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        path = directory / f"{common_name}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(directory, path, key, certificate)

    def issue(
        self,
        common_name: str,
        *,
        hosts: tuple[str, ...] = (),
        client: bool = False,
        key_password: str | None = None,
        valid_days: float = 2.0,
    ) -> Issued:
        """A certificate for ``hosts`` (DNS names or IP addresses) or, ``client``, a client.

        ``valid_days`` < 0 gives a certificate that has already expired.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=valid_days)
        if valid_days < 0:
            start, end = now - dt.timedelta(days=3), now + dt.timedelta(days=valid_days)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(key, key_password)
        cert = self.directory / f"{common_name}.crt"
        key_path = self.directory / f"{common_name}.key"
        bundle = self.directory / f"{common_name}.bundle.pem"
        cert.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
        bundle.write_bytes(key_pem + cert_pem)
        return Issued(common_name, cert, key_path, bundle, key_password)
