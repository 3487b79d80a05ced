"""The HTTP app: the routes of the service and the JSON answer to a path or method it does not serve.

POST /mutate and /validate go to the admission service, as ASGI calls: they are the path of every pod
create, so they skip starlette's middleware, routing, Request and Response (about a tenth of the CPU of
a host-access review). Everything else goes through the starlette app: GET /healthz (liveness), /readyz
(the node and namespace lists are in and current), /metrics (Prometheus text format), and the JSON
answer to a path or method we do not serve.
"""

from __future__ import annotations

from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook.adapters.http.edge import error_response
from webhook.adapters.http.service import AdmissionService


class _Asgi:
    """An ASGI callable starlette's Route mounts as an app (a function or method it would wrap as a
    request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class AdmissionApp:
    """ASGI: POST /mutate and /validate straight to the service, everything else to `app`."""

    def __init__(self, service: AdmissionService, app: ASGIApp) -> None:
        self.app = app
        self.reviews = {"/mutate": service.mutate, "/validate": service.validate}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            review = self.reviews.get(scope["path"])
            if review is not None:
                await review(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(service: AdmissionService) -> AdmissionApp:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if service.source.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "waiting for a current node and namespace list"}, status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        fix = "POST AdmissionReviews to /mutate or /validate; GET /healthz, /readyz, /metrics"
        return error_response(
            status, f"{request.method} {request.url.path}: {HTTPStatus(status).phrase}", "<path>", fix
        )

    app = Starlette(
        routes=[
            # The same endpoints as AdmissionApp's: here for the 405 to any other method.
            Route("/mutate", _Asgi(service.mutate), methods=["POST"]),
            Route("/validate", _Asgi(service.validate), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    # /mutate/ is no path of ours; a redirect would only hide a misconfigured webhook URL.
    app.router.redirect_slashes = False
    return AdmissionApp(service, app)
