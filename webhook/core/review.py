"""The AdmissionReview codec: a wire review in, a `Request` out; named response constructors
(`allowed`, `denied`, `patched`, `with_warnings`, `with_audit`) and `finish`, the one place every answer
is completed (uid kept, patch type set, warnings escaped and capped, the v1 envelope).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.core.api import (
    ADMISSION_API_VERSION,
    ADMISSION_KIND,
    AdmissionResponse,
    AdmissionReview,
    JsonPatchOp,
)
from webhook.errors import ReviewError, shown

WARNING_PREFIX = "immutable-os: "
MAX_WARNINGS = 6
MAX_WARNING_LENGTH = 240  # the apiserver truncates long warnings; kubectl prints each on one line
MAX_MESSAGE_LENGTH = 1500
MAX_ANNOTATION_LENGTH = 1000


@dataclass(frozen=True)
class Request:
    uid: str
    operation: str
    kind: str
    sub_resource: str
    namespace: str
    name: str
    username: str
    groups: frozenset[str]
    dry_run: bool
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None = None

    @property
    def display_name(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name or '(generated name)'}"


# A review is decoded JSON: its objects are dicts (isinstance against dict, not the Mapping ABC, which
# costs several times as much, on the path of every review).
_JSON_TYPE_NAMES: dict[type, str] = {dict: "an object", str: "a string"}


def _require(data: Any, key: str, where: str, kind: type) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise ReviewError(
            f"missing or not {_JSON_TYPE_NAMES[kind]}", field=f"{where}{key}", fix="send a v1 AdmissionReview"
        )
    return value


def object_name(obj: Mapping[str, Any] | None) -> str:
    """The object's name; before the apiserver generates one (mutation sees none), `prefix-*`."""
    meta = (obj or {}).get("metadata") or {}
    if not isinstance(meta, Mapping):
        return ""
    if meta.get("name"):
        return str(meta["name"])
    return f"{meta['generateName']}*" if meta.get("generateName") else ""


def read_review(body: Any) -> Request:
    """A `Request` from a decoded AdmissionReview body; ReviewError names what is missing."""
    if not isinstance(body, dict):
        raise ReviewError("body is not a JSON object", field="<body>", fix="send a v1 AdmissionReview")
    if body.get("apiVersion") != ADMISSION_API_VERSION or body.get("kind") != ADMISSION_KIND:
        raise ReviewError(
            f"expected {ADMISSION_API_VERSION} {ADMISSION_KIND}, "
            f"got {shown(body.get('apiVersion'))} {shown(body.get('kind'))}",
            field="apiVersion",
            fix="set admissionReviewVersions: [v1] in the webhook configuration",
        )
    request = _require(body, "request", "", dict)
    uid = _require(request, "uid", "request.", str)
    if not uid:
        raise ReviewError("empty uid", field="request.uid", fix="send the uid the apiserver generated")
    kind = _require(_require(request, "kind", "request.", dict), "kind", "request.kind.", str)
    operation = _require(request, "operation", "request.", str)
    user = request.get("userInfo")
    user = {} if user is None else user
    if not isinstance(user, dict):
        raise ReviewError(
            "not an object", field="request.userInfo", fix="send the userInfo the apiserver sent"
        )
    groups = user.get("groups") or []
    obj = request.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise ReviewError("not an object", field="request.object", fix="send the object under review")
    old = request.get("oldObject")
    if old is not None and not isinstance(old, dict):
        raise ReviewError("not an object", field="request.oldObject", fix="send the stored object, or null")
    if obj is None and operation in ("CREATE", "UPDATE"):
        raise ReviewError(
            f"{operation} without an object", field="request.object", fix="send the object under review"
        )
    return Request(
        uid=uid,
        operation=operation,
        kind=kind,
        sub_resource=str(request.get("subResource") or ""),
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or object_name(obj)),
        username=str(user.get("username") or ""),
        groups=frozenset(str(g) for g in groups) if isinstance(groups, list) else frozenset(),
        dry_run=bool(request.get("dryRun", False)),
        object=obj,
        old_object=old,
    )


# Responses ---------------------------------------------------------------------------------------------


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def allowed(uid: str) -> AdmissionResponse:
    return {"uid": uid, "allowed": True}


def denied(uid: str, message: str) -> AdmissionResponse:
    return {
        "uid": uid,
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": cap(message, MAX_MESSAGE_LENGTH)},
    }


def bad_request(uid: str, message: str) -> AdmissionResponse:
    """Denied because the request cannot be read, with code 400 as Pod Security Admission answers an
    object it cannot decode: the client's error, not a policy's verdict."""
    return {
        "uid": uid,
        "allowed": False,
        "status": {"code": 400, "reason": "BadRequest", "message": cap(message, MAX_MESSAGE_LENGTH)},
    }


def patched(response: AdmissionResponse, patch: Sequence[JsonPatchOp]) -> AdmissionResponse:
    """`response` with a JSONPatch; only an allowed response carries one."""
    if not patch or not response["allowed"]:
        return response
    encoded = base64.b64encode(_json(list(patch))).decode()
    return {**response, "patchType": "JSONPatch", "patch": encoded}


def _json(value: Any) -> bytes:
    """orjson where it can (our patches hold ASCII labels and paths); json.dumps for the rest."""
    with contextlib.suppress(orjson.JSONEncodeError):
        return orjson.dumps(value)
    return json.dumps(value).encode()


def with_warnings(response: AdmissionResponse, warnings: Iterable[str]) -> AdmissionResponse:
    """`response` with warnings, escaped and capped; a denial carries none (its message says it all)."""
    capped = _cap_warnings(list(warnings))
    if not capped or not response["allowed"]:
        return response
    return {**response, "warnings": capped}


def with_audit(response: AdmissionResponse, annotations: Mapping[str, str]) -> AdmissionResponse:
    # The apiserver prefixes each key with the webhook's name, so keys carry no prefix of their own.
    if not annotations:
        return response
    return {
        **response,
        "auditAnnotations": {k: cap(v, MAX_ANNOTATION_LENGTH) for k, v in annotations.items()},
    }


def finish(response: AdmissionResponse) -> AdmissionReview:
    return {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}


def errored(uid: str, message: str, *, allow: bool) -> AdmissionReview:
    """The answer when judging itself failed: the configured stance, never an HTTP 500."""
    if allow:
        return finish(with_warnings(allowed(uid), [f"not judged: {message}"]))
    return finish(denied(uid, f"immutable-os webhook could not judge: {message}"))


def _printable(text: str) -> str:
    """Control characters escaped: the apiserver drops a warning that holds any (they travel in a
    Warning header), and a hostPath may well contain a tab or a newline."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _cap_warnings(warnings: Sequence[str]) -> list[str]:
    capped = [cap(_printable(WARNING_PREFIX + w), MAX_WARNING_LENGTH) for w in warnings]
    if len(capped) > MAX_WARNINGS:
        capped = [*capped[: MAX_WARNINGS - 1], f"{WARNING_PREFIX}and {len(capped) - MAX_WARNINGS + 1} more"]
    return capped
