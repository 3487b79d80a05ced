"""The HTTP edge of a review: content type, body cap, JSON decoding, and the JSON error answers.

`read_json` turns a request into a decoded body or raises `Refusal`, a typed error that knows its HTTP
status, its metric label and the `{"error", "field", "fix"}` answer. Nothing here knows what a review is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

# The apiserver refuses request bodies over 3 MiB and etcd objects over 1.5 MiB; an UPDATE review carries
# the object and the old object, so a real review stays under 3 MiB plus a small envelope.
MAX_BODY_BYTES = 3 * 1024 * 1024 + 64 * 1024


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped. A review may carry a lone surrogate (`"\\ud800"` is
    legal JSON and decodes to one), which a UTF-8 encoder refuses: echoing it must not become a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str, field_name: str = "", fix: str = "") -> JSONResponse:
    return AsciiJSONResponse({"error": message, "field": field_name, "fix": fix}, status_code=status)


class Refusal(Exception):
    """A request the edge will not pass on: its status, its `reason` label, and what to tell the client."""

    def __init__(self, status: int, reason: str, message: str, field_name: str, fix: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field_name
        self.fix = fix

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.field, self.fix)


async def read_json(request: Request) -> Any:
    """The request's body, decoded; `Refusal` for a wrong content type, a body over the cap, or not JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refusal(415, "content-type", f"content type {content_type or 'none'} is not JSON",
                      "Content-Type", "send application/json")  # fmt: skip
    raw = await _read_body(request)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise Refusal(
            400, "json", f"body is not JSON: {err}", "<body>", "send a v1 AdmissionReview"
        ) from None


def _too_large() -> Refusal:
    return Refusal(
        413, "too-large", f"body over {MAX_BODY_BYTES} bytes", "<body>", "the apiserver never sends this"
    )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def uid_of(body: Any) -> str:
    """`request.uid` of a decoded body, if it has one: what an answer to a review that failed echoes."""
    request = body.get("request") if isinstance(body, Mapping) else None
    uid = request.get("uid") if isinstance(request, Mapping) else None
    return uid if isinstance(uid, str) else ""
