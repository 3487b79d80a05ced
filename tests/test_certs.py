"""The certificate library (webhook.adapters.certs) and its CLI (webhook.cli.certs): the chain verifies,
reuse keeps the CA, library errors name the parameter, and every bad flag exits 2 with one line."""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from webhook.adapters import certs
from webhook.cli import certs as certs_cli
from webhook.cli import main
from webhook.errors import CertificateError

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
SERVICE_NAMES = (
    "immutable-os-webhook",
    "immutable-os-webhook.immutable-os-webhook",
    "immutable-os-webhook.immutable-os-webhook.svc",
    "immutable-os-webhook.immutable-os-webhook.svc.cluster.local",
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webhook certs")
    certs_cli.configure_parser(parser)
    return parser.parse_args(list(argv))


def verify_for(
    ca: certs.CertificateAuthority, leaf: x509.Certificate, subject: x509.DNSName | x509.IPAddress
) -> None:
    """Full RFC 5280 path validation of `leaf` for `subject` against `ca` alone, as a TLS client would."""
    store = Store([ca.certificate])
    verifier = PolicyBuilder().store(store).time(NOW + timedelta(hours=1)).build_server_verifier(subject)
    verifier.verify(leaf, [])


@pytest.fixture(scope="module")
def ca() -> certs.CertificateAuthority:
    return certs.generate_ca("test-ca", now=NOW)


@pytest.fixture
def ca_files(tmp_path: Path, ca: certs.CertificateAuthority) -> tuple[Path, Path]:
    cert, key = tmp_path / "in" / "ca.crt", tmp_path / "in" / "ca.key"
    cert.parent.mkdir()
    cert.write_bytes(ca.cert_pem)
    key.write_bytes(ca.key_pem)
    return cert, key


# --- the chain ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"], ids=["ecdsa", "rsa"])
def test_serving_cert_verifies_for_every_name(key_type: str) -> None:
    ca = certs.generate_ca("test-ca", key_type=key_type, now=NOW)
    serving = certs.issue_serving_cert(
        ca,
        "immutable-os-webhook",
        "immutable-os-webhook",
        dns=["webhook.example.com"],
        ips=["127.0.0.1", "::1"],
        key_type=key_type,
        now=NOW,
    )
    leaf = serving.certificate
    leaf.verify_directly_issued_by(ca.certificate)
    for name in (*SERVICE_NAMES, "webhook.example.com"):
        verify_for(ca, leaf, x509.DNSName(name))
    for ip in ("127.0.0.1", "::1"):
        verify_for(ca, leaf, x509.IPAddress(ipaddress.ip_address(ip)))


def test_serving_cert_names_and_extensions(ca: certs.CertificateAuthority) -> None:
    leaf = certs.issue_serving_cert(
        ca, "immutable-os-webhook", "immutable-os-webhook", dns=["Extra.Example"], ips=["127.0.0.1"], now=NOW
    ).certificate
    ext = leaf.extensions
    assert leaf.subject.rfc4514_string() == "CN=immutable-os-webhook.immutable-os-webhook.svc"
    assert leaf.issuer == ca.certificate.subject
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [*SERVICE_NAMES, "extra.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())


def test_ca_is_a_leaf_only_signer(ca: certs.CertificateAuthority) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is True and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature and not usage.value.key_encipherment


@pytest.mark.parametrize(
    ("key_type", "check"),
    [
        ("ecdsa", lambda key: isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"),
        ("rsa", lambda key: isinstance(key, rsa.RSAPublicKey) and key.key_size == 3072),
    ],
    ids=["ecdsa-p256", "rsa-3072"],
)
def test_key_types(key_type: str, check: object) -> None:
    ca = certs.generate_ca("test-ca", key_type=key_type, now=NOW)
    leaf = certs.issue_serving_cert(ca, "svc", "ns", key_type=key_type, now=NOW).certificate
    assert callable(check)
    assert check(ca.certificate.public_key()) and check(leaf.public_key())
    # RSA key transport (TLS 1.2 RSA kx) needs keyEncipherment; ECDSA must not claim it.
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment is (key_type == "rsa")


def test_keys_are_unencrypted_pkcs8(ca: certs.CertificateAuthority) -> None:
    serving = certs.issue_serving_cert(ca, "svc", "ns", now=NOW)
    for pem in (ca.key_pem, serving.key_pem):
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        serialization.load_pem_private_key(pem, password=None)


def test_default_lifetimes_with_backdated_not_before(ca: certs.CertificateAuthority) -> None:
    leaf = certs.issue_serving_cert(ca, "svc", "ns", now=NOW).certificate
    for cert, days in ((ca.certificate, 3650), (leaf, 365)):
        assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
        assert cert.not_valid_after_utc == NOW + timedelta(days=days)


def test_lifetimes_are_overridable() -> None:
    ca = certs.generate_ca("test-ca", days=100, now=NOW)
    leaf = certs.issue_serving_cert(ca, "svc", "ns", days=30, now=NOW).certificate
    assert ca.certificate.not_valid_after_utc == NOW + timedelta(days=100)
    assert leaf.not_valid_after_utc == NOW + timedelta(days=30)


def test_serving_cert_never_outlives_its_ca() -> None:
    ca = certs.generate_ca("test-ca", days=10, now=NOW)
    leaf = certs.issue_serving_cert(ca, "svc", "ns", days=365, now=NOW).certificate
    assert leaf.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_every_serial_is_new(ca: certs.CertificateAuthority) -> None:
    serials = {certs.issue_serving_cert(ca, "svc", "ns", now=NOW).certificate.serial_number for _ in range(5)}
    assert len(serials) == 5


def test_expired_ca_is_refused() -> None:
    ca = certs.generate_ca("test-ca", days=1, now=NOW)
    with pytest.raises(CertificateError, match="ca_cert: the CA expired on 2026-01-16"):
        certs.issue_serving_cert(ca, "svc", "ns", now=NOW + timedelta(days=2))


def test_ca_bundle_is_base64_of_the_pem(ca: certs.CertificateAuthority) -> None:
    assert base64.b64decode(certs.ca_bundle_b64(ca.cert_pem)) == ca.cert_pem


# --- reusing a CA --------------------------------------------------------------------------------------


def test_load_ca_round_trips(ca: certs.CertificateAuthority, ca_files: tuple[Path, Path]) -> None:
    loaded = certs.load_ca(*ca_files)
    assert loaded.certificate == ca.certificate
    leaf = certs.issue_serving_cert(loaded, "svc", "ns", now=NOW).certificate
    verify_for(ca, leaf, x509.DNSName("svc.ns.svc"))


def test_load_ca_accepts_a_ca_made_elsewhere(tmp_path: Path) -> None:
    """An RSA CA without SKI (openssl-style defaults vary): AKI falls back to the CA public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "external")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    ca = certs.load_ca(tmp_path / "ca.crt", tmp_path / "ca.key")
    leaf = certs.issue_serving_cert(ca, "svc", "ns", now=NOW).certificate
    leaf.verify_directly_issued_by(cert)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki == x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())


def test_cli_reuse_keeps_the_ca_and_the_bundle(
    tmp_path: Path,
    ca: certs.CertificateAuthority,
    ca_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = parse("--out-dir", str(out), "--ca-cert", str(ca_files[0]), "--ca-key", str(ca_files[1]))
    assert certs_cli.run(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == certs.ca_bundle_b64(ca.cert_pem)
    assert (out / "ca.crt").read_bytes() == ca.cert_pem
    first = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())

    # A rotation: run again from the written CA; same caBundle, new serving certificate.
    assert (
        certs_cli.run(
            parse("--out-dir", str(out), "--ca-cert", str(out / "ca.crt"), "--ca-key", str(out / "ca.key"))
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == certs.ca_bundle_b64(ca.cert_pem)
    second = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    assert second.serial_number != first.serial_number
    second.verify_directly_issued_by(ca.certificate)


# --- the Secret ----------------------------------------------------------------------------------------


def test_secret_manifest(ca: certs.CertificateAuthority) -> None:
    serving = certs.issue_serving_cert(ca, "svc", "ns", now=NOW)
    manifest = certs.secret_manifest("webhook-tls", "ns", serving, ca)
    assert manifest["apiVersion"] == "v1" and manifest["kind"] == "Secret"
    assert manifest["type"] == "kubernetes.io/tls"
    assert manifest["metadata"] == {"name": "webhook-tls", "namespace": "ns"}
    decoded = {key: base64.b64decode(value, validate=True) for key, value in manifest["data"].items()}
    assert decoded == {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem, "ca.crt": ca.cert_pem}


def test_secret_manifest_rejects_a_bad_name(ca: certs.CertificateAuthority) -> None:
    serving = certs.issue_serving_cert(ca, "svc", "ns", now=NOW)
    with pytest.raises(CertificateError, match="secret_name: 'Webhook_TLS' is not a valid name"):
        certs.secret_manifest("Webhook_TLS", "ns", serving, ca)


# --- the CLI -------------------------------------------------------------------------------------------


def test_parser_defaults() -> None:
    args = parse()
    assert (args.service, args.namespace, args.out_dir) == (
        "immutable-os-webhook",
        "immutable-os-webhook",
        "./certs-out",
    )
    assert (args.dns, args.ip, args.key_type, args.days, args.ca_days) == ([], [], "ecdsa", 365, 3650)
    assert (args.ca_cert, args.ca_key, args.secret_name) == (None, None, None)


def test_cli_writes_files_with_modes_and_prints_the_bundle_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "dir"
    args = parse(
        "--out-dir", str(out), "--ip", "127.0.0.1", "--dns", "localhost", "--secret-name", "webhook-tls",
        "--service", "hook", "--namespace", "sys",
    )  # fmt: skip
    assert certs_cli.run(args) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()}
    assert modes == {
        "ca.crt": 0o644,
        "ca.key": 0o600,
        "tls.crt": 0o644,
        "tls.key": 0o600,
        "secret.yaml": 0o600,
    }
    ca_pem = (out / "ca.crt").read_bytes()
    assert base64.b64decode(captured.out.splitlines()[-1]) == ca_pem

    ca = certs.load_ca(out / "ca.crt", out / "ca.key")
    leaf = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    verify_for_now = PolicyBuilder().store(Store([ca.certificate]))
    verify_for_now.build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(leaf, [])
    verify_for_now.build_server_verifier(x509.DNSName("hook.sys.svc")).verify(leaf, [])

    secret = yaml.safe_load((out / "secret.yaml").read_text())
    assert secret["metadata"] == {"name": "webhook-tls", "namespace": "sys"}
    assert base64.b64decode(secret["data"]["tls.key"]) == (out / "tls.key").read_bytes()
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca_pem


def test_cli_rsa(tmp_path: Path) -> None:
    assert certs_cli.run(parse("--out-dir", str(tmp_path), "--key-type", "rsa")) == 0
    key = serialization.load_pem_private_key((tmp_path / "tls.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072


def test_cli_notes_a_lifetime_cut_short_by_the_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs_cli.run(parse("--out-dir", str(tmp_path), "--ca-days", "30")) == 0
    assert "note: tls.crt expires with its CA" in capsys.readouterr().err


def _not_a_ca(tmp_path: Path, ca: certs.CertificateAuthority) -> list[str]:
    serving = certs.issue_serving_cert(ca, "svc", "ns", now=NOW)
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(serving.key_pem)
    return ["--ca-cert", str(tmp_path / "tls.crt"), "--ca-key", str(tmp_path / "tls.key")]


def _mismatched_key(tmp_path: Path, ca: certs.CertificateAuthority) -> list[str]:
    other = certs.generate_ca("other", now=NOW)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "other.key").write_bytes(other.key_pem)
    return ["--ca-cert", str(tmp_path / "ca.crt"), "--ca-key", str(tmp_path / "other.key")]


def _encrypted_key(tmp_path: Path, ca: certs.CertificateAuthority) -> list[str]:
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "ca.key").write_bytes(encrypted)
    return ["--ca-cert", str(tmp_path / "ca.crt"), "--ca-key", str(tmp_path / "ca.key")]


def _garbage_cert(tmp_path: Path, ca: certs.CertificateAuthority) -> list[str]:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    (tmp_path / "ca.key").write_bytes(ca.key_pem)
    return ["--ca-cert", str(tmp_path / "ca.crt"), "--ca-key", str(tmp_path / "ca.key")]


def _garbage_key(tmp_path: Path, ca: certs.CertificateAuthority) -> list[str]:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "ca.key").write_bytes(ca.cert_pem)
    return ["--ca-cert", str(tmp_path / "ca.crt"), "--ca-key", str(tmp_path / "ca.key")]


def _out_dir_is_a_file(tmp_path: Path, ca: certs.CertificateAuthority) -> list[str]:
    (tmp_path / "blocker").write_text("")
    return ["--out-dir", str(tmp_path / "blocker" / "certs")]


BAD_INPUTS = [
    ("invalid-ip", ["--ip", "300.1.1.1"], "--ip: '300.1.1.1' is not an IP address", "127.0.0.1"),
    ("ip-is-a-name", ["--ip", "localhost"], "--ip: 'localhost' is not an IP address", "IPv4 or IPv6"),
    ("days-zero", ["--days", "0"], "--days: must be a positive number of days, got 0", "e.g. 365"),
    ("ca-days-negative", ["--ca-days", "-5"], "--ca-days: must be a positive number of days, got -5", "365"),
    ("bad-service", ["--service", "My_Svc"], "--service: 'My_Svc' is not a valid name", "RFC 1035"),
    (
        "bad-namespace",
        ["--namespace", "kube.system"],
        "--namespace: 'kube.system' is not a valid name",
        "RFC 1123",
    ),
    ("bad-dns", ["--dns", "bad name"], "--dns: 'bad name' is not a valid name", "DNS name"),
    ("bad-secret-name", ["--secret-name", "TLS!"], "--secret-name: 'TLS!' is not a valid name", "subdomain"),
    ("ca-cert-alone", ["--ca-cert", "ca.crt"], "--ca-key: is required when --ca-cert is given", "both"),
    ("ca-key-alone", ["--ca-key", "ca.key"], "--ca-cert: is required when --ca-key is given", "both"),
    (
        "unreadable-ca",
        ["--ca-cert", "/nonexistent/ca.crt", "--ca-key", "/nonexistent/ca.key"],
        "--ca-cert: cannot read /nonexistent/ca.crt: No such file or directory",
        "give the path of the CA certificate",
    ),
    ("ca-not-pem", _garbage_cert, "is not a PEM certificate", "--ca-cert"),
    ("ca-key-not-pem", _garbage_key, "--ca-key: ", "is not a PEM private key"),
    ("ca-key-mismatch", _mismatched_key, "--ca-key: ", "does not match the CA certificate"),
    ("ca-key-encrypted", _encrypted_key, "--ca-key: ", "is encrypted (decrypt it"),
    ("not-a-ca", _not_a_ca, "--ca-cert: ", "is not a CA certificate"),
    ("out-dir-unwritable", _out_dir_is_a_file, "--out-dir: cannot write", "a directory you can write to"),
]


@pytest.mark.parametrize(
    ("argv", "message", "fix"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path,
    ca: certs.CertificateAuthority,
    capsys: pytest.CaptureFixture[str],
    argv: object,
    message: str,
    fix: str,
) -> None:
    out = tmp_path / "out"
    extra = argv(tmp_path, ca) if callable(argv) else argv
    assert isinstance(extra, list)
    assert main(["certs", "--out-dir", str(out), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err and fix in captured.err
    assert "Traceback" not in captured.err
    assert not out.exists()  # nothing written on bad input


def test_library_errors_name_the_parameter_not_a_flag() -> None:
    with pytest.raises(CertificateError) as raised:
        certs.generate_ca("x", key_type="dsa")
    assert (raised.value.field, raised.value.fix) == ("key_type", "use ecdsa or rsa")
    assert str(raised.value) == "key_type: unknown key type 'dsa' (use ecdsa or rsa)"
    assert certs_cli.flag("ca_days") == "--ca-days"


# --- certs/generate.sh ---------------------------------------------------------------------------------


def test_generate_sh_is_a_thin_executable_wrapper() -> None:
    script = ROOT / "certs" / "generate.sh"
    assert os.access(script, os.X_OK)
    assert 'exec "${PYTHON:-python3}" -m webhook certs "$@"' in script.read_text()


def test_generate_sh_runs_the_cli(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", str(ROOT / "certs" / "generate.sh"), "--out-dir", str(tmp_path), "--ip", "127.0.0.1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert base64.b64decode(result.stdout.splitlines()[-1]) == (tmp_path / "ca.crt").read_bytes()
