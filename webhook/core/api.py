"""Wire formats only: the AdmissionReview (admission.k8s.io/v1) and RFC 6902 JSONPatch shapes.

Internal values are frozen dataclasses elsewhere; these TypedDicts describe JSON as it travels.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

JsonObject = dict[str, Any]

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict):
    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: NotRequired[str]
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    namespace: NotRequired[str]
    name: NotRequired[str]
    userInfo: UserInfo
    object: NotRequired[JsonObject | None]
    oldObject: NotRequired[JsonObject | None]
    dryRun: NotRequired[bool]


class Status(TypedDict, total=False):
    code: int
    message: str
    reason: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    patch: NotRequired[str]
    patchType: NotRequired[Literal["JSONPatch"]]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionReview(TypedDict):
    apiVersion: str
    kind: str
    request: NotRequired[AdmissionRequest]
    response: NotRequired[AdmissionResponse]


class AddOp(TypedDict):
    op: Literal["add"]
    path: str
    value: Any


class TestOp(TypedDict):
    op: Literal["test"]
    path: str
    value: Any


JsonPatchOp = AddOp | TestOp


def pointer(*segments: str | int) -> str:
    """An RFC 6901 JSON pointer from raw segments ("a/b" becomes "a~1b")."""
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in segments)
