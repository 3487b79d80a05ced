"""The Python floor: a bare handler (parse the review's JSON, answer allowed) on our serving stack.

The same starlette app shape and `webhook.adapters.http.serve` (uvicorn, TLS, the same options) as
`python -m webhook serve`, without any of our work per review: what a Python webhook here cannot beat.
bench/apiserver.py registers it with the chart's webhook configurations. `GET /count` says how many
reviews it has answered (the bench polls it to know when the apiserver calls it).

Run: `.venv/bin/python bench/floor.py PORT CERT_FILE KEY_FILE`
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webhook.adapters import tls
from webhook.adapters.http.serve import ServeOptions, serve

reviews = 0


async def answer(request: Request) -> Response:
    global reviews
    review = json.loads(await request.body())
    reviews += 1
    response = {"uid": review["request"]["uid"], "allowed": True}
    return JSONResponse(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    )


async def count(_: Request) -> Response:
    return PlainTextResponse(str(reviews))


def main(port: int, cert: str, key: str) -> None:
    routes = [Route(path, answer, methods=["POST"]) for path in ("/mutate", "/validate")]
    routes += [Route("/count", count), Route("/healthz", count)]
    options = ServeOptions("127.0.0.1", port, cert, key)
    asyncio.run(serve(Starlette(routes=routes), options, tls.CertReloader(cert, key)))


if __name__ == "__main__":
    if len(sys.argv) != 4 or not sys.argv[1].isdigit():
        sys.exit("usage: bench/floor.py PORT CERT_FILE KEY_FILE")
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
