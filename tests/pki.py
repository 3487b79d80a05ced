"""A test PKI: a CA, the serving files a CertReloader watches, and the CA file a client trusts."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

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
