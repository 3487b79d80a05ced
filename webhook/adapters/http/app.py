"""The HTTP app: the routes of the service and the JSON answer to a path or method it does not serve.

POST /mutate and /validate go to the admission service; GET /healthz (liveness), /readyz (the node and
namespace lists are in and current) and /metrics (Prometheus text format) are answered here.
"""

from __future__ import annotations

from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhook.adapters.http.edge import error_response
from webhook.adapters.http.service import AdmissionService


def create_app(service: AdmissionService) -> Starlette:
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
            Route("/mutate", service.mutate, methods=["POST"]),
            Route("/validate", service.validate, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    # /mutate/ is no path of ours; a redirect would only hide a misconfigured webhook URL.
    app.router.redirect_slashes = False
    return app
