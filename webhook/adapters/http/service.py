"""The admission service: a decoded review in, the core's answer out, counted and logged.

Every call into the decision core is in `AdmissionService._decide`, so the core's interface can change in
one place. Anything unexpected inside it (a bug) is answered with the request's uid per the configured
stance (`onInternalError`), never a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from webhook.adapters.http import edge
from webhook.adapters.http.inventory import InventoryState
from webhook.adapters.http.metrics import Metrics
from webhook.adapters.http.sources import InventorySource
from webhook.core.admission import Endpoint, Outcome, Verdict, errored, judge, read_review, respond
from webhook.core.api import AdmissionReview
from webhook.core.config import Config
from webhook.errors import ReviewError, WebhookError

review_log = logging.getLogger("webhook.review")


@dataclass(frozen=True)
class Answer:
    """What the core made of one review: the response to send and, if judging worked, the verdict."""

    uid: str
    review: AdmissionReview
    verdict: Verdict | None = None
    #: What the request was about, for the log line.
    context: Mapping[str, Any] = field(default_factory=dict)
    #: Why judging failed (the response then follows `onInternalError`), and what the response says.
    failure: Exception | None = None
    failure_message: str = ""


class AdmissionService:
    def __init__(self, config: Config, state: InventoryState, source: InventorySource) -> None:
        self.config = config
        self.state = state
        self.source = source
        self.metrics = Metrics(state, source)

    def _decide(self, endpoint: Endpoint, body: Any) -> Answer:
        """Every call into the core: read the review, judge it, write the response. A bad review raises
        ReviewError; any other failure is answered per `onInternalError`."""
        snapshot = self.state.snapshot  # read once: one consistent inventory for the whole review
        uid = edge.uid_of(body)
        try:
            request = read_review(body)
            uid = request.uid
            verdict = judge(request, endpoint=endpoint, config=self.config,
                            inventory=snapshot.usable(self.source.stale()),
                            namespace_labels=snapshot.labels_of(request.namespace))  # fmt: skip
            context = {"kind": request.kind, "namespace": request.namespace, "name": request.name,
                       "operation": request.operation, "dryRun": request.dry_run}  # fmt: skip
            return Answer(uid, respond(uid, verdict, endpoint), verdict, context)
        except ReviewError:
            raise
        except Exception as err:
            message = (
                err.describe() if isinstance(err, WebhookError) else f"internal error ({type(err).__name__})"
            )
            review = errored(uid, message, allow=self.config.allow_on_internal_error)
            return Answer(uid, review, failure=err, failure_message=message)

    async def mutate(self, http: HttpRequest) -> Response:
        return await self.handle(Endpoint.MUTATE, http)

    async def validate(self, http: HttpRequest) -> Response:
        return await self.handle(Endpoint.VALIDATE, http)

    async def handle(self, endpoint: Endpoint, http: HttpRequest) -> Response:
        started = time.perf_counter()
        try:
            body = await edge.read_json(http)
        except edge.Refusal as refusal:
            self.metrics.rejected.labels(refusal.reason).inc()
            return refusal.response()
        try:
            answer = self._decide(endpoint, body)
        except ReviewError as err:
            self.metrics.rejected.labels("review").inc()
            return edge.error_response(400, err.message, err.field, err.fix)
        if answer.verdict is not None:
            self._record(endpoint, answer, answer.verdict, time.perf_counter() - started)
        else:
            self.metrics.errors.labels(endpoint.value).inc()
            fields = {"uid": answer.uid, "endpoint": endpoint.value, "error": answer.failure_message}
            review_log.error("review failed", exc_info=answer.failure, extra={"fields": fields})
        return edge.AsciiJSONResponse(answer.review)

    def _record(self, endpoint: Endpoint, answer: Answer, verdict: Verdict, elapsed: float) -> None:
        mode = verdict.mode.value if verdict.mode else "-"
        self.metrics.reviews.labels(endpoint.value, verdict.outcome.value, mode).inc()
        self.metrics.latency.labels(endpoint.value).observe(elapsed)
        for finding in verdict.findings:
            self.metrics.findings.labels(endpoint.value, finding.check).inc()
        # Reviews without host access (or not judged at all) are the bulk: logged at debug only.
        level = logging.INFO if verdict.findings or verdict.outcome is Outcome.EXEMPT else logging.DEBUG
        if review_log.isEnabledFor(level):
            findings = [f"{f.check}:{f.field}" for f in verdict.findings]
            fields = {
                "uid": answer.uid, "endpoint": endpoint.value, **answer.context,
                "decision": verdict.outcome.value, "allowed": verdict.allowed, "mode": mode,
                "findings": findings, "steered": verdict.steered, "ms": round(elapsed * 1000, 3),
            }  # fmt: skip
            review_log.log(level, "review", extra={"fields": fields})
