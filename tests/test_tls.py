"""Tests for webhook.adapters.tls: a real uvicorn TLS server on 127.0.0.1 swaps its certificate without a failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.pki import HOST, Pki, replace_file
from webhook.adapters import certs, tls
from webhook.errors import ServingCertificateError

STREAM_REQUESTS = 200
STREAM_WORKERS = 4


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


APP = Starlette(routes=[Route("/", ok)])


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path)


@asynccontextmanager
async def serving(reloader: tls.CertReloader) -> AsyncIterator[str]:
    """uvicorn serving APP in this event loop on a free 127.0.0.1 port with the reloader's context."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    # The kept-alive connection of the rotation test must outlive a slow run on a busy machine; uvicorn's
    # default idle timeout (5 s) would close it and the client would silently reconnect with the new cert.
    config = uvicorn.Config(APP, lifespan="off", log_level="warning", http="h11", timeout_keep_alive=120)
    tls.apply_to_uvicorn(config, reloader)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start within 5 s"
        assert config.ssl is reloader.context
        yield f"https://{HOST}:{port}/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


async def served_serial(url: str, context: ssl.SSLContext, *, tls_max: ssl.TLSVersion | None = None) -> int:
    """The serial of the certificate a brand-new connection to `url` is handed."""
    if tls_max is not None:
        context.maximum_version = tls_max
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(HOST, port, ssl=context, server_hostname=HOST), timeout=5
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), timeout=5)
    return x509.load_der_x509_certificate(der).serial_number


def response_serial(response: httpx.Response) -> int:
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True)).serial_number


# --- the server context --------------------------------------------------------------------------------


def test_server_context_settings(pki: Pki) -> None:
    context = tls.make_server_context(pki.cert_path, pki.key_path)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE  # the apiserver does not present a client certificate


@pytest.mark.parametrize(
    "break_it",
    [
        lambda pki: pki.key_path.write_bytes(certs.generate_ca("other").key_pem),
        lambda pki: pki.cert_path.write_bytes(pki.serving.cert_pem[:100]),
        lambda pki: pki.key_path.unlink(),
    ],
    ids=["mismatched-key", "truncated-cert", "missing-key"],
)
def test_unusable_pair_is_a_typed_error_naming_the_files(pki: Pki, break_it: Callable[[Pki], object]) -> None:
    break_it(pki)
    for make in (tls.make_server_context, tls.CertReloader):
        with pytest.raises(ServingCertificateError, match=f"cannot serve TLS with {pki.cert_path}") as info:
            make(pki.cert_path, pki.key_path)
        assert "matching unencrypted key" in str(info.value)


def test_encrypted_key_is_refused_not_prompted_for(pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.serving.key_pem, password=None)
    pki.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ServingCertificateError, match="the private key is encrypted"):
        tls.CertReloader(pki.cert_path, pki.key_path)


# --- rotation under load -------------------------------------------------------------------------------


@pytest.mark.parametrize("new_ca", [False, True], ids=["same-ca", "new-ca"])
async def test_rotation_under_load_drops_nothing(pki: Pki, new_ca: bool) -> None:
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    old_serial = pki.serial
    if new_ca:
        # A CA rotation: clients trust old and new CAs during the overlap, as a caBundle would.
        next_ca = certs.generate_ca("next-ca")
        pki.ca_path.write_bytes(pki.ca.cert_pem + next_ca.cert_pem)
        new = pki.issue(next_ca)
    else:
        new = pki.issue()
    assert new.certificate.serial_number != old_serial

    async with serving(reloader) as url:
        context = pki.client_context()
        fresh = httpx.AsyncClient(verify=context, timeout=5, limits=httpx.Limits(max_keepalive_connections=0))
        kept = httpx.AsyncClient(verify=context, timeout=5, limits=httpx.Limits(keepalive_expiry=120))
        async with fresh, kept:
            before = await kept.get(url)
            assert response_serial(before) == old_serial

            done = 0
            serials: list[int] = []
            failures: list[BaseException] = []
            swapped = asyncio.Event()

            async def worker(count: int) -> None:
                nonlocal done
                for _ in range(count):
                    try:
                        response = await fresh.get(url)
                        assert response.status_code == 200 and response.text == "ok"
                        serials.append(response_serial(response))
                    except (httpx.HTTPError, ssl.SSLError, AssertionError) as error:
                        failures.append(error)
                    done += 1
                    await asyncio.sleep(0)

            async def rotate() -> None:
                for _ in range(10_000):  # bounded: the workers reach the halfway mark long before
                    if done >= STREAM_REQUESTS // 2:
                        break
                    await asyncio.sleep(0.001)
                pki.install(new)
                assert reloader.check() is True
                swapped.set()

            per_worker = STREAM_REQUESTS // STREAM_WORKERS
            await asyncio.wait_for(
                asyncio.gather(rotate(), *(worker(per_worker) for _ in range(STREAM_WORKERS))), timeout=120
            )

            assert swapped.is_set()
            assert failures == []
            assert len(serials) == STREAM_REQUESTS
            assert set(serials) == {old_serial, new.certificate.serial_number}
            assert serials[-1] == new.certificate.serial_number
            assert await served_serial(url, pki.client_context()) == new.certificate.serial_number

            # The connection opened before the swap keeps its handshake and keeps working.
            after = await kept.get(url)
            assert after.status_code == 200
            assert response_serial(after) == old_serial


async def test_secret_volume_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    """Kubelet updates a Secret volume by pointing `..data` at a new directory; tls.crt is a symlink."""
    ca = certs.generate_ca("test-ca")
    old, new = (certs.issue_serving_cert(ca, "svc", "ns", ips=[HOST]) for _ in range(2))
    volume = tmp_path / "volume"
    volume.mkdir()

    def publish(version: str, serving: certs.ServingCertificate) -> None:
        data_dir = volume / version
        data_dir.mkdir()
        (data_dir / "tls.crt").write_bytes(serving.cert_pem)
        (data_dir / "tls.key").write_bytes(serving.key_pem)
        (volume / "..data_tmp").symlink_to(version)
        os.replace(volume / "..data_tmp", volume / "..data")

    publish("..2026_01_01_00_00_00.1", old)
    for name in ("tls.crt", "tls.key"):
        (volume / name).symlink_to(f"..data/{name}")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)

    reloader = tls.CertReloader(volume / "tls.crt", volume / "tls.key")
    async with serving(reloader) as url:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        assert await served_serial(url, context) == old.certificate.serial_number
        publish("..2026_02_01_00_00_00.2", new)
        assert reloader.check() is True
        assert await served_serial(url, context) == new.certificate.serial_number
        assert reloader.check() is False


# --- a bad pair never replaces a good one --------------------------------------------------------------


def _truncated_cert(pki: Pki, new: certs.ServingCertificate) -> None:
    replace_file(pki.key_path, new.key_pem)
    replace_file(pki.cert_path, new.cert_pem[: len(new.cert_pem) // 2])


def _truncated_key(pki: Pki, new: certs.ServingCertificate) -> None:
    replace_file(pki.cert_path, new.cert_pem)
    replace_file(pki.key_path, new.key_pem[: len(new.key_pem) // 2])


def _new_cert_old_key(pki: Pki, new: certs.ServingCertificate) -> None:
    replace_file(pki.cert_path, new.cert_pem)


def _key_missing(pki: Pki, new: certs.ServingCertificate) -> None:
    pki.key_path.unlink()


def _empty_files(pki: Pki, new: certs.ServingCertificate) -> None:
    replace_file(pki.cert_path, b"")
    replace_file(pki.key_path, b"")


BAD_PAIRS = [
    ("truncated-cert", _truncated_cert),
    ("truncated-key", _truncated_key),
    ("new-cert-old-key", _new_cert_old_key),
    ("key-missing", _key_missing),
    ("empty-files", _empty_files),
]


@pytest.mark.parametrize("break_it", [case[1] for case in BAD_PAIRS], ids=[case[0] for case in BAD_PAIRS])
async def test_bad_pair_keeps_the_old_certificate_serving(
    pki: Pki, caplog: pytest.LogCaptureFixture, break_it: Callable[[Pki, certs.ServingCertificate], None]
) -> None:
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    new = pki.issue()
    async with serving(reloader) as url:
        with caplog.at_level(logging.WARNING, logger="webhook.adapters.tls"):
            break_it(pki, new)
            assert reloader.check() is False
            assert reloader.check() is False  # still broken: retried, but warned about once
        warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings_logged) == 1
        assert "still serving the previous certificate" in warnings_logged[0].getMessage()
        assert await served_serial(url, pki.client_context()) == pki.serial

        pki.install(new)  # the rotation completes
        assert reloader.check() is True
        assert await served_serial(url, pki.client_context()) == new.certificate.serial_number


# --- protocol versions ---------------------------------------------------------------------------------


def tls_1_1_client(pki: Pki) -> ssl.SSLContext:
    """A client that offers TLS 1.0-1.1 only. OpenSSL 3 allows those at security level 0 alone."""
    context = pki.client_context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 and TLSv1_1 are deprecated, rightly
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def handshake_once(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> str:
    """Handshake over 127.0.0.1 with blocking sockets (which, unlike asyncio's, send the TLS alert)."""
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):
                server_context.wrap_socket(conn, server_side=True).close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection((HOST, port), timeout=5) as raw,
                client_context.wrap_socket(raw, server_hostname=HOST) as conn,
            ):
                return conn.version() or ""
        finally:
            thread.join(timeout=5)


def test_server_context_refuses_tls_1_1_with_a_protocol_version_alert(pki: Pki) -> None:
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.load_cert_chain(pki.cert_path, pki.key_path)
    try:
        control = handshake_once(permissive, tls_1_1_client(pki))
    except ssl.SSLError:
        pytest.skip("this OpenSSL build cannot speak TLS 1.1 at all, so a refusal would prove nothing")
    assert control == "TLSv1.1"  # the client really offers TLS 1.1 ...

    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    with pytest.raises(ssl.SSLError) as info:
        handshake_once(reloader.context, tls_1_1_client(pki))
    assert info.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"  # ... and our server context refuses it


async def test_uvicorn_refuses_a_tls_1_1_client(pki: Pki) -> None:
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    async with serving(reloader) as url:
        # asyncio's server closes without flushing the alert, so the client sees a reset or an EOF.
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await served_serial(url, tls_1_1_client(pki))
        assert await served_serial(url, pki.client_context()) == pki.serial  # and keeps serving others


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
async def test_tls_1_2_and_1_3_clients_are_served(pki: Pki, version: ssl.TLSVersion) -> None:
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    async with serving(reloader) as url:
        assert await served_serial(url, pki.client_context(), tls_max=version) == pki.serial


# --- the reload loop and uvicorn wiring ----------------------------------------------------------------


async def test_run_picks_up_a_rotation_and_survives_a_failing_check(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    real_check = reloader.check
    calls = 0

    def flaky_check() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return real_check()

    monkeypatch.setattr(reloader, "check", flaky_check)
    new = pki.issue()
    async with serving(reloader) as url:
        task = asyncio.create_task(reloader.run(interval=0.01))
        try:
            pki.install(new)
            for _ in range(500):  # bounded: 5 s
                if await served_serial(url, pki.client_context()) == new.certificate.serial_number:
                    break
                await asyncio.sleep(0.01)
            assert await served_serial(url, pki.client_context()) == new.certificate.serial_number
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert calls >= 2
    assert any("certificate check failed" in record.getMessage() for record in caplog.records)


def test_reload_without_memfd_uses_a_private_temp_dir(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    pki.install(pki.issue())
    assert reloader.check() is True


def test_apply_to_uvicorn_sets_the_context_factory(pki: Pki) -> None:
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    config = uvicorn.Config(APP, lifespan="off")
    tls.apply_to_uvicorn(config, reloader)
    assert config.is_ssl
    config.load()
    assert config.ssl is reloader.context


def test_apply_to_uvicorn_on_a_loaded_config(pki: Pki) -> None:
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    config = uvicorn.Config(APP, lifespan="off")
    config.load()
    tls.apply_to_uvicorn(config, reloader)
    assert config.ssl is reloader.context


def test_apply_to_uvicorn_before_ssl_context_factory_existed(pki: Pki) -> None:
    """uvicorn < 0.47 had no ssl_context_factory: load the config now, then set Config.ssl."""

    class OldConfig:
        def __init__(self) -> None:
            self.loaded = False
            self.ssl: ssl.SSLContext | None = None

        def load(self) -> None:
            self.loaded = True
            self.ssl = None  # what an old Config.load() does without ssl_certfile

    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    config = OldConfig()
    tls.apply_to_uvicorn(config, reloader)  # type: ignore[arg-type]
    assert config.loaded and config.ssl is reloader.context
