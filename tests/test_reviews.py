"""The golden AdmissionReviews (testdata/reviews): each answered by both endpoints as written down."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from webhook.adapters.files import load_nodes
from webhook.core.admission import Endpoint, answer, respond
from webhook.core.config import Config
from webhook.core.placement import Inventory
from webhook.core.review import read_review

REVIEWS = Path(__file__).resolve().parents[1] / "testdata" / "reviews"
CASES = {p.stem: json.loads(p.read_text()) for p in sorted(REVIEWS.glob("*.json"))}
EXAMPLE = Inventory.build(load_nodes(None), Config())


def check_answer(expect: dict[str, Any], review: dict[str, Any], response: dict[str, Any]) -> None:
    """What a golden case says one endpoint answers, against the wire response."""
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is expect["allowed"], response
    assert ("patch" in response) is expect.get("patched", False), response
    if "decision" in expect:
        assert response["auditAnnotations"]["decision"] == expect["decision"], response
    if "message" in expect:
        assert expect["message"] in response["status"]["message"], response
    if "warning" in expect:
        assert any(expect["warning"] in w for w in response.get("warnings", [])), response
    if "patch" in response:
        patched = jsonpatch.apply_patch(
            review["request"]["object"], json.loads(base64.b64decode(response["patch"]))
        )
        assert "immutable-os.io/steered" in patched["metadata"]["annotations"]


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_review(name: str, endpoint: Endpoint) -> None:
    case = CASES[name]
    request = read_review(case["review"])
    verdict = answer(request, endpoint=endpoint, config=Config(), inventory=EXAMPLE, namespace_labels={})
    check_answer(
        case["expect"][endpoint.value], case["review"], dict(respond(request.uid, verdict)["response"])
    )


def test_the_readme_review_is_the_golden_one() -> None:
    example = json.loads((REVIEWS.parents[1] / "examples" / "reviews" / "hostpath-pod.json").read_text())
    assert example == CASES["writes-usr-unconstrained"]["review"]
