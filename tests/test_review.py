"""The review codec: malformed reviews name what is missing; every answer is finished in one place."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import review_for, set_field, tweak
from webhook.core.review import (
    MAX_WARNING_LENGTH,
    MAX_WARNINGS,
    allowed,
    denied,
    errored,
    finish,
    patched,
    read_review,
    with_audit,
    with_warnings,
)
from webhook.errors import ReviewError

V1 = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "<body>"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}, "apiVersion"),
        (V1, "request"),
        ({**V1, "request": {"kind": {}}}, "request.uid"),
        ({**V1, "request": {"uid": ""}}, "request.uid"),
        ({**V1, "request": {"uid": "u", "kind": {"kind": "Pod"}}}, "request.operation"),
        ({**V1, "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE"}}, "request.object"),
        ({**V1, "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": "x"}}, "request.object"),
        ({**V1, "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {}, "userInfo": []}},
         "request.userInfo"),
    ],
    ids=["not an object", "v1beta1", "no request", "no uid", "empty uid", "no operation", "create without object",
         "object not an object", "userInfo not an object"],
)  # fmt: skip
def test_malformed_reviews_name_what_is_missing(body: Any, field: str) -> None:
    with pytest.raises(ReviewError) as err:
        read_review(body)
    assert err.value.field == field and err.value.fix


def test_read_review_reads_every_field() -> None:
    review = review_for(
        tweak(set_field("hostPID", True)), username="bob", groups=["g1", "g2"], operation="UPDATE"
    )
    review["request"]["oldObject"] = tweak()
    review["request"]["dryRun"] = True
    request = read_review(review)
    assert (request.kind, request.operation, request.namespace, request.name) == (
        "Pod",
        "UPDATE",
        "default",
        "app",
    )
    assert request.username == "bob" and request.groups == {"g1", "g2"} and request.dry_run
    assert request.old_object == tweak()
    review["request"]["oldObject"] = "x"
    with pytest.raises(ReviewError) as err:
        read_review(review)
    assert err.value.field == "request.oldObject"


def test_generated_names_are_shown_as_prefixes() -> None:
    pod = tweak()
    pod["metadata"] = {"generateName": "agent-", "namespace": "default"}
    request = read_review(review_for(pod))
    assert request.name == "agent-*" and request.display_name == "Pod default/agent-*"


def test_constructors_and_finish() -> None:
    assert finish(allowed("u")) == {**V1, "response": {"uid": "u", "allowed": True}}
    no = denied("u", "x" * 5000)
    assert no["status"]["code"] == 403 and len(no["status"]["message"]) == 1500
    patch = [{"op": "add", "path": "/metadata/labels", "value": {}}]
    assert patched(no, patch) == no, "a denial never carries a patch"
    assert with_warnings(no, ["w"]) == no, "a denial carries its message, not warnings"
    ok = patched(allowed("u"), patch)
    assert ok["patchType"] == "JSONPatch" and ok["patch"]
    assert with_audit(ok, {"a": "b" * 2000})["auditAnnotations"]["a"].endswith("…")


def test_warnings_are_capped_in_count_and_length_and_escaped() -> None:
    warnings = with_warnings(allowed("u"), ["x" * 1000 for _ in range(20)])["warnings"]
    assert len(warnings) == MAX_WARNINGS and all(len(w) <= MAX_WARNING_LENGTH for w in warnings)
    assert warnings[-1].endswith("and 15 more")
    escaped = with_warnings(allowed("u"), ["/var/log\tarchive\n"])["warnings"]
    assert escaped == ["immutable-os: /var/log\\tarchive\\n"]


def test_errored_follows_the_configured_stance() -> None:
    ok = errored("u", "boom", allow=True)["response"]
    assert ok["allowed"] is True and ok["warnings"] == ["immutable-os: not judged: boom"]
    no = errored("u", "boom", allow=False)["response"]
    assert no["allowed"] is False and no["uid"] == "u" and no["status"]["code"] == 403
