"""Certificate tooling for the webhook's TLS: a private CA and the serving certificate it signs.

A library: it makes, reads and checks certificates, and writes nothing; `python -m webhook certs`
(webhook/cli/certs.py) and certs/generate.sh are its command-line surface.

Choices, and why (certs/README.md says the same for operators):
- Keys: ECDSA P-256 by default (small, fast handshakes, accepted by every kube-apiserver); `--key-type rsa`
  gives RSA 3072, the RSA size with the same ~128-bit strength, for environments that mandate RSA.
- Lifetimes: the CA lives 3650 days (10 years) so the caBundle registered with the apiserver rarely
  changes; the serving certificate lives 365 days and is re-issued from the same CA (`--ca-cert/--ca-key`),
  so rotating it never touches the caBundle. Both are overridable (`--ca-days`, `--days`). A serving
  certificate never outlives its CA (its notAfter is capped at the CA's): a chain is dead when its CA is.
- notBefore is backdated 5 minutes so an apiserver whose clock lags a little accepts a fresh certificate.
- CA: BasicConstraints CA=true pathlen 0 and KeyUsage keyCertSign+cRLSign, both critical: it signs leaf
  certificates and nothing else. Serving certificate: CN=<svc>.<ns>.svc, DNS SANs <svc>, <svc>.<ns>,
  <svc>.<ns>.svc, <svc>.<ns>.svc.cluster.local (the apiserver dials <svc>.<ns>.svc; the rest serve
  in-cluster clients) plus any --dns/--ip, EKU serverAuth, KeyUsage digitalSignature (+ keyEncipherment
  for RSA, whose TLS 1.2 key transport needs it), BasicConstraints CA=false, SKI/AKI so chains build
  unambiguously.

Every user-caused problem raises CertificateError naming the parameter at fault (`days`, `ca_cert`, ...)
and the fix; the CLI turns the parameter into its flag.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypedDict

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.errors import CertificateError

KeyType = Literal["ecdsa", "rsa"]
KEY_TYPES: tuple[KeyType, ...] = ("ecdsa", "rsa")
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEFAULT_SERVICE = "immutable-os-webhook"
DEFAULT_NAMESPACE = "immutable-os-webhook"
CA_DAYS = 3650
SERVING_DAYS = 365
RSA_BITS = 3072
CLOCK_SKEW = timedelta(minutes=5)

# Kubernetes name rules: Service names are RFC 1035 labels, namespaces RFC 1123 labels, Secret names
# RFC 1123 subdomains. Checking here turns an apiserver rejection later into a clear message now.
_RFC1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_RFC1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_RFC1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_SAN = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class _PemPair:
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class CertificateAuthority(_PemPair):
    """The CA that signs serving certificates; its certificate is the webhook's caBundle."""


@dataclass(frozen=True)
class ServingCertificate(_PemPair):
    """The certificate and key the webhook serves TLS with (tls.crt and tls.key)."""


class SecretMetadata(TypedDict):
    name: str
    namespace: str


class SecretManifest(TypedDict):
    apiVersion: str
    kind: str
    metadata: SecretMetadata
    type: str
    data: dict[str, str]


def generate_ca(
    common_name: str, *, key_type: str = "ecdsa", days: int = CA_DAYS, now: datetime | None = None
) -> CertificateAuthority:
    """A new self-signed CA that may sign leaf certificates only (pathlen 0)."""
    check_days("ca_days", days)
    key = _new_key(key_type)
    issued = now or datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued - CLOCK_SKEW)
        .not_valid_after(issued + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def issue_serving_cert(
    ca: CertificateAuthority,
    service: str,
    namespace: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = SERVING_DAYS,
    key_type: str = "ecdsa",
    now: datetime | None = None,
) -> ServingCertificate:
    """A serving certificate for Service `service` in `namespace`, signed by `ca`."""
    check_days("days", days)
    dns_names = serving_dns_names(service, namespace, dns)
    ip_addresses = [parse_ip(ip) for ip in ips]
    ca_cert, ca_key = _parse_ca(ca.cert_pem, ca.key_pem, cert_source="the CA", key_source="the CA key")
    issued = now or datetime.now(UTC)
    if ca_cert.not_valid_after_utc <= issued:
        raise CertificateError(
            f"the CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}",
            field="ca_cert",
            fix="generate a new CA and register its caBundle",
        )
    key = _new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{service}.{namespace}.svc")])
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ip) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued - CLOCK_SKEW)
        .not_valid_after(min(issued + timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert, ca_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCertificate(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def serving_dns_names(service: str, namespace: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The DNS SANs of a serving certificate: every in-cluster name of the Service, then `extra`."""
    _check_name("service", service, _RFC1035_LABEL, 63, "an RFC 1035 label such as immutable-os-webhook")
    _check_name("namespace", namespace, _RFC1123_LABEL, 63, "an RFC 1123 label such as kube-system")
    names = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    names += [f"{service}.{namespace}.svc.cluster.local"]
    for name in extra:
        _check_name("dns", name.lower(), _DNS_SAN, 253, "a DNS name such as webhook.example.com")
        names.append(name.lower())
    return tuple(dict.fromkeys(names))


def ca_bundle_b64(ca_pem: bytes) -> str:
    """The CA certificate as a webhook configuration's `caBundle` wants it: base64 of the PEM."""
    return base64.b64encode(ca_pem).decode("ascii")


def load_ca(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> CertificateAuthority:
    """An existing CA from PEM files, checked to be a CA whose key matches its certificate."""
    cert_pem = _read("ca_cert", cert_path, "the CA certificate (ca.crt) written by an earlier run")
    key_pem = _read("ca_key", key_path, "the CA key (ca.key) written together with the CA certificate")
    cert, key = _parse_ca(cert_pem, key_pem, cert_source=str(cert_path), key_source=str(key_path))
    return CertificateAuthority(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def secret_manifest(
    name: str, namespace: str, serving: ServingCertificate, ca: CertificateAuthority
) -> SecretManifest:
    """A `kubernetes.io/tls` Secret holding the serving pair and the CA certificate (never the CA key)."""
    check_secret_name(name)
    _check_name("namespace", namespace, _RFC1123_LABEL, 63, "an RFC 1123 label such as kube-system")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(serving.cert_pem).decode("ascii"),
            "tls.key": base64.b64encode(serving.key_pem).decode("ascii"),
            "ca.crt": base64.b64encode(ca.cert_pem).decode("ascii"),
        },
    }


def check_days(param: str, days: int) -> None:
    if days <= 0:
        raise CertificateError(
            f"must be a positive number of days, got {days}", field=param, fix="give e.g. 365"
        )


def _check_name(param: str, value: str, rule: re.Pattern[str], max_len: int, what: str) -> None:
    if len(value) > max_len or rule.fullmatch(value) is None:
        raise CertificateError(
            f"{value!r} is not a valid name", field=param, fix=f"give {what} (at most {max_len} chars)"
        )


def check_secret_name(name: str) -> None:
    _check_name("secret_name", name, _RFC1123_SUBDOMAIN, 253, "a DNS subdomain such as webhook-tls")


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise CertificateError(
            f"{value!r} is not an IP address",
            field="ip",
            fix="give an IPv4 or IPv6 address such as 127.0.0.1",
        ) from None


def _new_key(key_type: str) -> SigningKey:
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    raise CertificateError(f"unknown key type {key_type!r}", field="key_type", fix="use ecdsa or rsa")


def key_usage(
    *, digital_signature: bool = False, key_encipherment: bool = False, key_cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_cert: x509.Certificate, ca_key: SigningKey) -> x509.AuthorityKeyIdentifier:
    # Reuse the CA's own SKI when it has one: a CA made elsewhere may derive it differently from us.
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _read(param: str, path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CertificateError(
            f"cannot read {path}: {error.strerror}", field=param, fix=f"give the path of {what}"
        ) from None


def _parse_ca(
    cert_pem: bytes, key_pem: bytes, *, cert_source: str, key_source: str
) -> tuple[x509.Certificate, SigningKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise CertificateError(
            f"{cert_source} is not a PEM certificate",
            field="ca_cert",
            fix="give the ca.crt written by an earlier run",
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateError(
            f"{key_source} is encrypted",
            field="ca_key",
            fix="decrypt it (openssl pkey -in ENCRYPTED -out ca.key), or generate a new CA",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(
            f"{key_source} is not a PEM private key",
            field="ca_key",
            fix="give the ca.key written together with ca.crt",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(
            f"{key_source} is neither ECDSA nor RSA", field="ca_key", fix="use an ECDSA or RSA CA key"
        )
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise CertificateError(
            f"{key_source} does not match the CA certificate {cert_source}",
            field="ca_key",
            fix="give the ca.key written together with that ca.crt",
        )
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertificateError(
            f"{cert_source} is not a CA certificate (it lacks BasicConstraints CA=true)",
            field="ca_cert",
            fix="give the ca.crt written by an earlier run, not a tls.crt",
        )
    return cert, key


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
