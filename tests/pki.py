"""The one test PKI.

`Pki`: the webhook's serving pair, made with the product's own certificate library (webhook.adapters.certs)
as the files a CertReloader watches, and the CA file a client trusts. `CertificateAuthority`: a CA for what
the product does not make: the test apiserver's serving certificate and the client certificates of each
identity (CN = user, O = groups), used by tests/e2e/harness.py.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.adapters import certs

HOST = "127.0.0.1"


def replace_file(path: Path, data: bytes) -> None:
    """Write beside `path` and rename over it, as a careful operator (or `webhook certs`) does."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Pki:
    ca: certs.CertificateAuthority
    serving: certs.ServingCertificate
    cert_path: Path
    key_path: Path
    ca_path: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        ca = certs.generate_ca("test-ca")
        pki = cls(ca, cls.issue_from(ca), directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
        pki.install(pki.serving)
        pki.ca_path.write_bytes(ca.cert_pem)
        return pki

    @staticmethod
    def issue_from(ca: certs.CertificateAuthority) -> certs.ServingCertificate:
        return certs.issue_serving_cert(ca, "immutable-os-webhook", "webhook-system", ips=[HOST])

    def issue(self, ca: certs.CertificateAuthority | None = None) -> certs.ServingCertificate:
        return self.issue_from(ca or self.ca)

    def install(self, serving: certs.ServingCertificate) -> None:
        """Key then certificate, each written beside its target and renamed over it."""
        replace_file(self.key_path, serving.key_pem)
        replace_file(self.cert_path, serving.cert_pem)

    @property
    def serial(self) -> int:
        return self.serving.certificate.serial_number

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class CertificateAuthority:
    """A self-signed CA that issues leaf certificates for tests."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                certs.key_usage(digital_signature=True, key_cert_sign=True),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        ip_sans: Sequence[str] = (),
        dns_sans: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> tuple[bytes, bytes]:
        """A leaf certificate and its key, both PEM. `organizations` become Kubernetes groups for a
        client certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                certs.key_usage(digital_signature=True),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
        sans += [x509.DNSName(d) for d in dns_sans]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)
