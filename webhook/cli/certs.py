"""`certs`: a CA and a serving certificate as files (and a Secret manifest); prints the caBundle last.

The certificate library (webhook/adapters/certs.py) names parameters in its errors (`ca_cert`, `days`);
here they become the flags a person typed (`--ca-cert`, `--days`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

from webhook.adapters.certs import (
    CA_DAYS,
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    KEY_TYPES,
    SERVING_DAYS,
    ca_bundle_b64,
    check_days,
    check_secret_name,
    generate_ca,
    issue_serving_cert,
    load_ca,
    parse_ip,
    secret_manifest,
    serving_dns_names,
)
from webhook.errors import CertificateError

DEFAULT_OUT_DIR = "./certs-out"


def flag(param: str) -> str:
    """The flag of a library parameter: `ca_cert` -> `--ca-cert`."""
    return "--" + param.replace("_", "-")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("certs", help="generate a CA and a serving certificate; print the caBundle")
    configure_parser(parser)
    parser.set_defaults(run=run)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `certs` flags to `parser`; `run` takes the parsed namespace."""
    parser.add_argument("--service", default=DEFAULT_SERVICE, help="Service name (default: %(default)s)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="its namespace (default: %(default)s)")
    parser.add_argument(
        "--dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)"
    )
    parser.add_argument(
        "--ip", action="append", default=[], metavar="ADDR", help="extra IP SAN, e.g. 127.0.0.1 (repeatable)"
    )
    parser.add_argument(
        "--out-dir", default=DEFAULT_OUT_DIR, help="where to write files (default: %(default)s)"
    )
    parser.add_argument("--ca-cert", metavar="PATH", help="reuse this CA certificate (keeps the caBundle)")
    parser.add_argument("--ca-key", metavar="PATH", help="the key of --ca-cert")
    parser.add_argument(
        "--key-type",
        choices=KEY_TYPES,
        default="ecdsa",
        help="ECDSA P-256 or RSA 3072, for a new CA and the serving key",
    )
    parser.add_argument("--days", type=int, default=SERVING_DAYS, help="serving cert lifetime (default: 365)")
    parser.add_argument("--ca-days", type=int, default=CA_DAYS, help="new CA lifetime (default: 3650)")
    parser.add_argument(
        "--secret-name", metavar="NAME", help="also write secret.yaml, a kubernetes.io/tls Secret"
    )


def run(args: argparse.Namespace) -> int:
    """Write ca.crt, ca.key, tls.crt, tls.key (and secret.yaml); print the caBundle as stdout's last line."""
    try:
        return _run(args)
    except CertificateError as error:
        fix = error.fix.replace("generate a new CA", "omit --ca-cert/--ca-key for a new CA")
        raise CertificateError(
            error.message, field=flag(error.field) if error.field else "", fix=fix
        ) from error


def _run(args: argparse.Namespace) -> int:
    # Check every flag before the slow part (RSA keygen) and before touching the disk.
    check_days("days", args.days)
    check_days("ca_days", args.ca_days)
    serving_dns_names(args.service, args.namespace, args.dns)
    for ip in args.ip:
        parse_ip(ip)
    if args.secret_name is not None:
        check_secret_name(args.secret_name)
    if (args.ca_cert is None) != (args.ca_key is None):
        missing, given = ("ca_key", "--ca-cert") if args.ca_key is None else ("ca_cert", "--ca-key")
        raise CertificateError(
            f"is required when {given} is given",
            field=missing,
            fix="pass both --ca-cert and --ca-key, or neither for a new CA",
        )

    if args.ca_cert is not None:
        ca = load_ca(args.ca_cert, args.ca_key)
    else:
        ca = generate_ca(f"{args.service}-ca", key_type=args.key_type, days=args.ca_days)
    serving = issue_serving_cert(
        ca, args.service, args.namespace, dns=args.dns, ips=args.ip, days=args.days, key_type=args.key_type
    )

    out_dir = Path(args.out_dir)
    files: list[tuple[str, bytes, int]] = [
        ("ca.crt", ca.cert_pem, 0o644),
        ("ca.key", ca.key_pem, 0o600),
        ("tls.crt", serving.cert_pem, 0o644),
        ("tls.key", serving.key_pem, 0o600),
    ]
    if args.secret_name is not None:
        manifest = secret_manifest(args.secret_name, args.namespace, serving, ca)
        # The Secret carries tls.key, so it is as private as the key itself.
        files.append(("secret.yaml", yaml.safe_dump(dict(manifest), sort_keys=False).encode(), 0o600))
    for name, data, mode in files:
        _write_atomically(out_dir / name, data, mode)
        print(f"wrote {out_dir / name}")

    not_after = serving.certificate.not_valid_after_utc
    if not_after >= ca.certificate.not_valid_after_utc:
        print(
            f"note: tls.crt expires with its CA on {not_after:%Y-%m-%d}; --days was cut short",
            file=sys.stderr,
        )
    print(ca_bundle_b64(ca.cert_pem))
    return 0


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # Write beside the target and rename: a reader (the webhook's reloader, a kubectl apply) sees the old
    # file or the new one, never half of one; mkstemp creates it 0600, so a key is never briefly readable.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise CertificateError(
            f"cannot write {path}: {error.strerror}", field="out_dir", fix="pass a directory you can write to"
        ) from None
