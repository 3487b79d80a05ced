"""The decision end to end: review → assessment → mutate or validate → AdmissionReview response.

`answer` judges one request for one endpoint (what the HTTP adapter calls); `respond` turns a verdict
into the wire response through the review codec's constructors; `decide` runs both webhooks in the
order the apiserver does (mutate, apply the patch, validate), for `check` and `scan`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

from webhook.core.api import AdmissionReview
from webhook.core.assessment import Assessment, assess, unreadable
from webhook.core.config import Config
from webhook.core.decision import Outcome, Verdict, mutate, validate
from webhook.core.mutation import apply_patch
from webhook.core.placement import Inventory
from webhook.core.review import (
    Request,
    allowed,
    bad_request,
    denied,
    finish,
    patched,
    with_audit,
    with_warnings,
)
from webhook.errors import ManifestError

__all__ = ["Decision", "Endpoint", "Outcome", "Request", "Verdict", "answer", "decide", "respond"]


class Endpoint(enum.Enum):
    MUTATE = "mutate"
    VALIDATE = "validate"


def answer(
    request: Request,
    *,
    endpoint: Endpoint,
    config: Config,
    inventory: Inventory | None,
    namespace_labels: Mapping[str, str],
) -> Verdict:
    """One request at one endpoint. An object that cannot be read is judged `invalid` (decision.py)."""
    try:
        assessment = assess(request, config=config, inventory=inventory, namespace_labels=namespace_labels)
    except ManifestError as err:
        assessment = unreadable(request, err, config=config, namespace_labels=namespace_labels)
    return mutate(assessment, config) if endpoint is Endpoint.MUTATE else validate(assessment, config)


def respond(uid: str, verdict: Verdict) -> AdmissionReview:
    """The wire answer: allowed or denied, with the verdict's patch, warnings and audit annotations."""
    if not verdict.allowed:
        refuse = bad_request if verdict.outcome is Outcome.INVALID else denied
        return finish(with_audit(refuse(uid, verdict.message), verdict.audit))
    response = with_audit(with_warnings(allowed(uid), verdict.warnings), verdict.audit)
    return finish(patched(response, verdict.patch))


@dataclass(frozen=True)
class Decision:
    """Both webhooks in the order the apiserver calls them: mutate, apply the patch, validate."""

    mutated: Verdict
    validated: Verdict

    @property
    def allowed(self) -> bool:
        return self.validated.allowed

    @property
    def assessment(self) -> Assessment:
        """What was judged before any steering: the object as submitted."""
        assert self.mutated.assessment is not None
        return self.mutated.assessment

    @property
    def warnings(self) -> tuple[str, ...]:
        return (*self.mutated.warnings, *self.validated.warnings) if self.allowed else ()


def decide(
    request: Request, *, config: Config, inventory: Inventory | None, namespace_labels: Mapping[str, str]
) -> Decision:
    mutated = mutate(
        assess(request, config=config, inventory=inventory, namespace_labels=namespace_labels), config
    )
    if mutated.patch and request.object is not None:
        request = replace(request, object=apply_patch(request.object, mutated.patch))
    validated = validate(
        assess(request, config=config, inventory=inventory, namespace_labels=namespace_labels), config
    )
    return Decision(mutated, validated)
