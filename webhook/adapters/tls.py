"""Serving TLS for the webhook: one server SSLContext whose certificate is swapped in place on rotation.

A shell module: it reads tls.crt/tls.key from disk (a Secret volume) and lends uvicorn the context.

How a rotation is picked up: `CertReloader.check` stats both paths (os.stat follows symlinks, so the
atomic `..data` symlink swap of a Secret volume shows up as a new inode) and, when (mtime, size, inode)
changed, loads the new pair into the SAME SSLContext. New handshakes use the new certificate; open
connections keep the one they negotiated. No restart, no dropped connection.

Why each pair is proven on a scratch context first: OpenSSL installs a new certificate before it checks
the key, so a load_cert_chain that fails on the live context (a half-written file mid-rotation, a key that
does not match) leaves it with the new certificate and no usable key, and every later handshake fails.
So a pair is read into memory once, loaded into a throwaway context, and only then loaded, from those
same bytes, into the live one; a bad pair is logged and retried on the next check while the old one serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.errors import ServingCertificateError

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger(__name__)

MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2
CHECK_INTERVAL_SECONDS = 2.0

# (st_mtime_ns, st_size, st_ino) of the certificate, then of the key.
_Stamp = tuple[int, int, int, int, int, int]


@dataclass(frozen=True)
class _Pair:
    cert_pem: bytes
    key_pem: bytes


def make_server_context(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 minimum, Python's default ciphers) serving the chain in cert_path."""
    context = _new_context()
    try:
        context.load_cert_chain(cert_path, key_path, password=_refuse_encrypted_key)
    except (OSError, ServingCertificateError) as error:
        raise _unusable(cert_path, key_path, error) from None
    return context


class CertReloader:
    """Keeps `context` serving the newest valid certificate/key pair found at cert_path and key_path."""

    def __init__(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        self.context = _new_context()
        try:
            self._stamp = self._stat()
            _load(self.context, self._read())
        except (OSError, ServingCertificateError) as error:
            raise _unusable(cert_path, key_path, error) from None
        # The state we last warned about, so a pair that stays broken is logged once, not every check.
        self._warned: _Stamp | str | None = None

    def check(self) -> bool:
        """Load the pair on disk if it changed since the last load; True if the served certificate changed."""
        try:
            stamp = self._stat()
        except OSError as error:
            self._warn_once(f"missing:{error.filename}", f"cannot stat {error.filename}: {error.strerror}")
            return False
        if stamp == self._stamp:
            return False
        try:
            pair = self._read()
            _load(_new_context(), pair)
        except (OSError, ServingCertificateError) as error:  # ssl.SSLError is an OSError
            self._warn_once(stamp, str(error))
            return False
        # The scratch load above proved these exact bytes, so this cannot fail half-way on their content.
        _load(self.context, pair)
        self._stamp = stamp
        self._warned = None
        logger.info("tls: serving the new certificate from %s", self.cert_path)
        return True

    async def run(self, interval: float = CHECK_INTERVAL_SECONDS) -> None:
        """Call `check` every `interval` seconds until cancelled."""
        # check() stays on the event loop's thread on purpose: load_cert_chain mutates the SSL_CTX that
        # the loop reads for every new handshake, and OpenSSL does not make that safe across threads.
        while True:
            try:
                self.check()
            except Exception:
                logger.exception("tls: certificate check failed; still serving the previous certificate")
            await asyncio.sleep(interval)

    def _stat(self) -> _Stamp:
        cert, key = os.stat(self.cert_path), os.stat(self.key_path)
        return (cert.st_mtime_ns, cert.st_size, cert.st_ino, key.st_mtime_ns, key.st_size, key.st_ino)

    def _read(self) -> _Pair:
        return _Pair(cert_pem=self.cert_path.read_bytes(), key_pem=self.key_path.read_bytes())

    def _warn_once(self, state: _Stamp | str, reason: str) -> None:
        if state != self._warned:
            self._warned = state
            logger.warning(
                "tls: not reloading %s and %s (%s); still serving the previous certificate, retrying",
                self.cert_path,
                self.key_path,
                reason,
            )


def apply_to_uvicorn(config: uvicorn.Config, reloader: CertReloader) -> None:
    """Make `config` serve TLS with `reloader.context`. Call it before `uvicorn.Server(config).serve()`.

    uvicorn builds its own SSLContext in `Config.load()` and stores it in `Config.ssl`, which
    `Server.startup` hands to `loop.create_server(ssl=...)` for every listener. On uvicorn >= 0.47 this sets
    `Config.ssl_context_factory`, the supported hook, to return our context; on older uvicorn it loads the
    config now (`Server` skips `load()` for a loaded config) and sets `Config.ssl` directly. Leave
    `ssl_certfile`/`ssl_keyfile` unset, and run one worker: the context lives in this process.
    """
    if not config.loaded and hasattr(config, "ssl_context_factory"):
        config.ssl_context_factory = lambda _config, _default: reloader.context
        return
    if not config.loaded:
        config.load()
    config.ssl = reloader.context


def _new_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_TLS_VERSION
    # TLS 1.2 renegotiation lets one client make the server repeat expensive handshakes; nothing needs it.
    context.options |= ssl.OP_NO_RENEGOTIATION
    return context


def _load(context: ssl.SSLContext, pair: _Pair) -> None:
    with _as_files(pair) as (cert_file, key_file):
        context.load_cert_chain(cert_file, key_file, password=_refuse_encrypted_key)


@contextlib.contextmanager
def _as_files(pair: _Pair) -> Iterator[tuple[str, str]]:
    """Paths that read back `pair`: load_cert_chain takes paths only, and re-reading the real files
    could see a newer, unproven pair."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        # Anonymous in-memory files: the key touches no disk, and a read-only root filesystem is fine.
        fds: list[int] = []
        try:
            for name, data in (("tls.crt", pair.cert_pem), ("tls.key", pair.key_pem)):
                fds.append(os.memfd_create(name, os.MFD_CLOEXEC))
                with open(fds[-1], "wb", closefd=False) as out:
                    out.write(data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
    else:
        with tempfile.TemporaryDirectory(prefix="webhook-tls-") as private_dir:  # created mode 0700
            cert_file, key_file = Path(private_dir, "tls.crt"), Path(private_dir, "tls.key")
            cert_file.write_bytes(pair.cert_pem)
            key_file.write_bytes(pair.key_pem)
            yield str(cert_file), str(key_file)


def _refuse_encrypted_key() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for a passphrase and block the server.
    raise ServingCertificateError(
        "the private key is encrypted", fix="the webhook needs an unencrypted PEM key"
    )


def _unusable(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str], error: Exception
) -> ServingCertificateError:
    reason = f"{error.strerror}: {error.filename}" if isinstance(error, OSError) and error.filename else error
    return ServingCertificateError(
        f"cannot serve TLS with {os.fspath(cert_path)} and {os.fspath(key_path)} ({reason})",
        fix="point them at a PEM certificate and its matching unencrypted key, e.g. from `webhook certs`",
    )
