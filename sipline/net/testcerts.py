"""Certificates for tests and benchmarks of TLS (the ``cryptography`` package, a
test dependency): a CA and the certificates it issues, written as PEM files.

    ca = Authority.create(tmp_path, "test-ca")
    server = ca.issue("proxy", dns=["proxy.example.com"], ips=["127.0.0.1"])
    server.certificate, server.key   # paths of the PEM files
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    certificate: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    directory: Path
    name: str
    cert: x509.Certificate
    private: ec.EllipticCurvePrivateKey

    @property
    def certificate(self) -> Path:
        return self.directory / f"{self.name}.pem"

    @classmethod
    def create(cls, directory: Path, name: str = "test-ca") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        authority = cls(directory, name, cert, key)
        authority.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return authority

    def issue(
        self, name: str, *, dns: list[str] = (), ips: list[str] = (), days: int = 30  # type: ignore[assignment]
    ) -> Issued:
        """A certificate for ``name`` (its CN) with these subjectAltNames, for
        servers and clients alike; its PEM files are ``<name>.pem``, ``<name>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + days * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private.public_key()),
                False,
            )
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), False)
        cert = builder.sign(self.private, hashes.SHA256())
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        issued.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
