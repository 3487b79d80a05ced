"""Running the app: uvicorn over TLS from the certificate reloader, until SIGTERM or SIGINT.

A graceful stop returns from `serve` (exit code 0), so the caller can stop the cluster watch after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from webhook.adapters.tls import CertReloader, apply_to_uvicorn


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    cert_file: str
    key_file: str
    cert_check_seconds: float = 2.0
    graceful_seconds: int = 20


def build_uvicorn(app: ASGIApp, options: ServeOptions, reloader: CertReloader) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
        # Finish in-flight reviews after SIGTERM; the apiserver retries nothing, so don't cut them off.
        timeout_graceful_shutdown=options.graceful_seconds,
    )
    apply_to_uvicorn(config, reloader)
    return uvicorn.Server(config)


async def serve(app: ASGIApp, options: ServeOptions, reloader: CertReloader) -> None:
    """Serve until SIGTERM/SIGINT: uvicorn stops accepting, finishes in-flight requests, returns."""
    server = build_uvicorn(app, options, reloader)
    watcher = asyncio.create_task(reloader.run(options.cert_check_seconds))
    try:
        with _return_after_stop_signal():
            await server.serve()
    finally:
        watcher.cancel()


@contextlib.contextmanager
def _return_after_stop_signal() -> Iterator[None]:
    # After its graceful shutdown uvicorn re-raises the signal under the handler it found. The default
    # handler would kill the process there (exit 143 after SIGTERM), before `serve` returns and the
    # caller stops the cluster watch; a no-op handler underneath makes a graceful stop a plain return.
    if threading.current_thread() is not threading.main_thread():
        yield  # uvicorn handles no signals off the main thread either
        return
    previous = {sig: signal.signal(sig, _stop_signal_handled) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_signal_handled(signum: int, frame: FrameType | None) -> None:
    """uvicorn has already shut down gracefully for this signal."""
