"""The HTTP edge of a review: content type, body cap, pending-bytes budget, JSON decoding, error answers.

`BodyReader.read_json` turns an ASGI request (scope and receive) into a decoded body or raises `Refusal`,
a typed error that knows its HTTP status, its metric label and the `{"error", "field", "fix"}` answer;
`send_json` writes an answer. They work on ASGI messages directly, not through starlette's Request and
Response: /mutate and /validate are the path of every pod create, and those objects cost about a tenth
of a host-access review. Nothing here knows what a review is; what a review may contain is the core's
business.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

MiB = 1024 * 1024

# The body cap, from the apiserver's own limits. An UPDATE review carries `object` and `oldObject`. Each
# is an object etcd can store: at most 1.5 MiB (etcd's --max-request-bytes; an object over that fails at
# storage whatever a webhook answers, so its review need not fit). The apiserver writes the review with
# Go's encoding/json, which escapes `&`, `<` and `>` (and U+2028, U+2029, control characters) as 6-byte
# `\u0026` escapes, so a stored string of 1.5 MiB of `&` arrives as 9 MiB. Field names and punctuation
# grow an object less (a container with every boolean field set is ~5x its stored protobuf size).
# Hence 2 x 6 x 1.5 MiB, plus 1 MiB for the envelope (request metadata, userInfo groups and extra,
# options). controller-runtime's 7 MiB (2 x 3 MiB + 1 MiB) counts object + oldObject + envelope but not
# the escapes: an UPDATE of a pod holding 640 KiB of `&` already passes it (7.5 MiB).
ETCD_MAX_OBJECT_BYTES = 3 * MiB // 2
GO_JSON_ESCAPE_GROWTH = 6
REVIEW_ENVELOPE_BYTES = 1 * MiB
MAX_BODY_BYTES = 2 * GO_JSON_ESCAPE_GROWTH * ETCD_MAX_OBJECT_BYTES + REVIEW_ENVELOPE_BYTES  # 19 MiB

# Bodies are held in memory while they arrive. Beyond the first 64 KiB of each (reviews are mostly 5 to
# 50 KB, and the connection cap bounds how many bodies there are), bytes draw on one budget shared by all
# requests: three bodies at the cap fit, and many slow near-cap uploads are refused (503) rather than
# growing the process past its memory limit.
FREE_BYTES_PER_BODY = 64 * 1024
MAX_PENDING_BODY_BYTES = 64 * MiB

# Decoded JSON costs far more than its text: `{"a":1},` is 8 bytes and a 200-byte dict. Every member of
# an object and element of an array follows a `{`, `[` or `,`, so their count bounds what json.loads will
# build, at ~160 bytes each at worst (measured: an object of a million keys took the process from 61 to
# 220 MiB). 750,000 bounds one decode to ~120 MB. A dense pod (60 containers with 300 env vars, 20 ports
# and 20 mounts each) is 13 bytes of JSON a value, so an UPDATE of two such pods as large as etcd stores
# holds ~250,000 to 460,000. Counted over the raw bytes (commas inside strings count too): three memchr
# passes, a few ms at the cap. Reviews are decoded one at a time (on the event loop).
MAX_JSON_VALUES = 750_000


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = MAX_BODY_BYTES
    max_pending_body_bytes: int = MAX_PENDING_BODY_BYTES
    free_bytes_per_body: int = FREE_BYTES_PER_BODY
    max_json_values: int = MAX_JSON_VALUES


def ascii_json(content: Any) -> bytes:
    """JSON with every non-ASCII character escaped. A review may carry a lone surrogate (`"\\ud800"` is
    legal JSON and decodes to one), which a UTF-8 encoder refuses: echoing it must not become a 500."""
    # orjson writes the same bytes as json.dumps for ASCII text (answers carry strings, booleans and
    # integers); anything else (non-ASCII, a lone surrogate) takes the stdlib's escaping path.
    with contextlib.suppress(orjson.JSONEncodeError):
        fast = orjson.dumps(content)
        if fast.isascii():
            return fast
    return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


class AsciiJSONResponse(JSONResponse):
    """starlette's JSONResponse, written by `ascii_json`."""

    def render(self, content: Any) -> bytes:
        return ascii_json(content)


def error_content(message: str, field_name: str = "", fix: str = "") -> dict[str, str]:
    return {"error": message, "field": field_name, "fix": fix}


def error_response(status: int, message: str, field_name: str = "", fix: str = "") -> JSONResponse:
    # A refusal may come before the body is read. uvicorn then reads and drops the rest (bounded by the
    # body deadline) and keeps the connection: closing it under a client still sending would make most
    # clients lose the answer to a reset.
    return AsciiJSONResponse(error_content(message, field_name, fix), status_code=status)


_JSON_TYPE = (b"content-type", b"application/json")


async def send_json(
    send: Send, status: int, content: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """The answer `content` as JSON (`ascii_json`), with the headers starlette's JSONResponse sends."""
    body = ascii_json(content)
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [length, _JSON_TYPE, *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_empty(send: Send, status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    start = [(b"content-length", b"0"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": b""})


def header(scope: Scope, name: bytes) -> str:
    """The first value of header `name` (lower case, as ASGI servers hand them over), or ""."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class Refusal(Exception):
    """A request the edge will not pass on: its status, its `reason` label, and what to tell the client."""

    def __init__(self, status: int, reason: str, message: str, field_name: str, fix: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field_name
        self.fix = fix

    async def send(self, send: Send) -> None:
        headers = ((b"retry-after", b"1"),) if self.status == 503 else ()
        await send_json(send, self.status, error_content(self.message, self.field, self.fix), headers)


class ClientGone(Exception):
    """The client closed the connection before its request body was in; nobody is left to answer."""


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON (Go's encoding/json never writes it)")


class BodyReader:
    """Reads request bodies under the per-body cap and the budget of pending bytes across all requests.

    One instance per service; it is used from the event loop's thread only, so the count needs no lock.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        #: Bytes of bodies being read or decoded now, beyond each body's free allowance.
        self.pending = 0

    async def read_json(self, scope: Scope, receive: Receive) -> Any:
        """The request's body, decoded. `Refusal` for a wrong content type, a body over the cap or the
        budget, or not JSON; `ClientGone` if the client hung up while sending it."""
        content_type = header(scope, b"content-type").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise Refusal(415, "content-type", f"content type {content_type or 'none'} is not JSON",
                          "Content-Type", "send application/json")  # fmt: skip
        charged = 0
        try:
            raw, charged = await self._read(scope, receive)
            return self._decode(raw)
        finally:
            self.pending -= charged

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes | bytearray, int]:
        limits = self.limits
        declared = header(scope, b"content-length")
        if declared.isdigit():
            if int(declared) > limits.max_body_bytes:
                raise self._too_large()
            if int(declared) - limits.free_bytes_per_body > limits.max_pending_body_bytes - self.pending:
                raise self._busy()
        message = await receive()
        chunk = message.get("body", b"")
        if message["type"] == "http.request" and not message.get("more_body", False):
            # The whole body in one message: a review under uvicorn's read size, the common case.
            if len(chunk) > limits.max_body_bytes:
                raise self._too_large()
            owed = max(0, len(chunk) - limits.free_bytes_per_body)
            if owed > limits.max_pending_body_bytes - self.pending:
                raise self._busy()
            self.pending += owed
            return chunk, owed
        body, charged = bytearray(), 0
        try:
            while True:
                if message["type"] != "http.request":  # http.disconnect
                    raise ClientGone
                body += message.get("body", b"")
                if len(body) > limits.max_body_bytes:
                    raise self._too_large()
                owed = max(0, len(body) - limits.free_bytes_per_body) - charged
                if owed:
                    if self.pending + owed > limits.max_pending_body_bytes:
                        raise self._busy()
                    self.pending += owed
                    charged += owed
                if not message.get("more_body", False):
                    break
                message = await receive()
        except (ClientGone, Refusal):
            self.pending -= charged
            raise
        return body, charged

    def _decode(self, raw: bytes | bytearray) -> Any:
        # Every value after the first follows one of those bytes, so a body of fewer bytes than the
        # limit holds fewer values: only a larger one is counted.
        values = 0
        if len(raw) > self.limits.max_json_values:
            values = raw.count(b",") + raw.count(b"{") + raw.count(b"[")
        if values > self.limits.max_json_values:
            raise Refusal(413, "too-large", f"JSON with {values} values, over {self.limits.max_json_values}",
                          "<body>", "no AdmissionReview holds this many")  # fmt: skip
        # orjson reads what Go's encoding/json writes, 3-4 times faster. What it refuses (a lone
        # surrogate, NaN, nesting past 1,024, not UTF-8) goes to json.loads, which accepts or refuses it
        # with the messages below as before. One difference: an integer past 64 bits (which the
        # apiserver never sends: it decoded the object into typed fields first) reads as a float.
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(raw)
        try:
            return json.loads(raw, parse_constant=_refuse_constant)
        except RecursionError:
            raise Refusal(400, "json", "body is not usable JSON: nested too deep", "<body>",
                          "send a v1 AdmissionReview") from None  # fmt: skip
        except (ValueError, UnicodeDecodeError) as err:
            raise Refusal(400, "json", f"body is not JSON: {err}", "<body>",
                          "send a v1 AdmissionReview") from None  # fmt: skip

    def _too_large(self) -> Refusal:
        return Refusal(413, "too-large", f"body over {self.limits.max_body_bytes} bytes", "<body>",
                       "the apiserver never sends this")  # fmt: skip

    def _busy(self) -> Refusal:
        return Refusal(503, "busy", "too many large request bodies in flight", "<body>",
                       "retry; the apiserver's reviews are far smaller")  # fmt: skip


def uid_of(body: Any) -> str:
    """`request.uid` of a decoded body, if it has one: what an answer to a review that failed echoes."""
    request = body.get("request") if isinstance(body, Mapping) else None
    uid = request.get("uid") if isinstance(request, Mapping) else None
    return uid if isinstance(uid, str) else ""
