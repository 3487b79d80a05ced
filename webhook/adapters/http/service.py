"""The admission service: a decoded review in, the core's answer out, counted and logged.

Every call into the decision core is in `AdmissionService._decide`, so the core's interface can change in
one place. Anything unexpected inside it (a bug) is answered with the request's uid per the configured
stance (`onInternalError`), never a 500.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from webhook.adapters.http import edge, logs
from webhook.adapters.http.inventory import InventoryState
from webhook.adapters.http.metrics import Metrics
from webhook.adapters.http.sources import InventorySource
from webhook.core.admission import Endpoint, Outcome, Verdict, answer, respond
from webhook.core.api import AdmissionReview
from webhook.core.config import Config
from webhook.core.review import Request, errored, read_review
from webhook.errors import ReviewError, WebhookError

review_log = logging.getLogger("webhook.review")
edge_log = logging.getLogger("webhook.edge")

# The apiserver's uid is a UUID (36 characters). Every answer echoes it and every log line carries it, so a
# longer one is refused rather than copied around.
MAX_UID_LENGTH = 128
# Names, namespaces and kinds are at most 253 characters in Kubernetes; a log line carries no more.
MAX_LOGGED_LENGTH = 253


@dataclass(frozen=True)
class Judged:
    """What the core made of one review: the response to send and, if judging worked, the verdict."""

    uid: str
    review: AdmissionReview
    verdict: Verdict | None = None
    #: The request as read, for the log line.
    request: Request | None = None
    #: Why judging failed (the response then follows `onInternalError`), and what the response says.
    failure: Exception | None = None
    failure_message: str = ""


class AdmissionService:
    def __init__(
        self,
        config: Config,
        state: InventoryState,
        source: InventorySource,
        limits: edge.Limits | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.source = source
        self.metrics = Metrics(state, source)
        self.bodies = edge.BodyReader(limits)
        self.metrics.pending_body_bytes.set_function(lambda: float(self.bodies.pending))

    def _decide(self, endpoint: Endpoint, body: Any, uid: str) -> Judged:
        """Every call into the core: read the review, judge it, write the response. A bad review raises
        ReviewError; any other failure is answered per `onInternalError` (with `uid`, as far as it could
        be read)."""
        snapshot = self.state.snapshot  # read once: one consistent inventory for the whole review
        try:
            request = read_review(body)
            uid = request.uid
            verdict = answer(request, endpoint=endpoint, config=self.config,
                             inventory=snapshot.usable(self.source.stale()),
                             namespace_labels=snapshot.labels_of(request.namespace))  # fmt: skip
            return Judged(uid, respond(uid, verdict), verdict, request)
        except ReviewError:
            raise
        except Exception as err:
            message = (
                err.describe() if isinstance(err, WebhookError) else f"internal error ({type(err).__name__})"
            )
            review = errored(uid, message, allow=self.config.allow_on_internal_error)
            return Judged(uid, review, failure=err, failure_message=message)

    async def mutate(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: POST /mutate."""
        await self.handle(Endpoint.MUTATE, scope, receive, send)

    async def validate(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: POST /validate."""
        await self.handle(Endpoint.VALIDATE, scope, receive, send)

    async def handle(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        counts = self.metrics.counts
        counts.in_flight += 1
        try:
            await self._handle(endpoint, scope, receive, send)
        finally:
            counts.in_flight -= 1

    async def _handle(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            body = await self.bodies.read_json(scope, receive)
        except edge.Refusal as refusal:
            self.metrics.rejected.labels(refusal.reason).inc()
            await refusal.send(send)
            return
        except edge.ClientGone:
            # Not an error of ours: counted, and logged at debug, without a traceback.
            self.metrics.hangups.inc()
            edge_log.debug(
                "client hung up while sending its request", extra={"fields": {"path": scope["path"]}}
            )
            await edge.send_empty(send, 400, ((b"connection", b"close"),))  # nobody left to read it
            return
        uid = edge.uid_of(body)
        if len(uid) > MAX_UID_LENGTH:
            self.metrics.rejected.labels("review").inc()
            await edge.send_json(send, 400, edge.error_content(
                f"uid of {len(uid)} characters, over {MAX_UID_LENGTH}", "request.uid",
                "send the uid the apiserver generated"))  # fmt: skip
            return
        try:
            judged = self._decide(endpoint, body, uid)
        except ReviewError as err:
            self.metrics.rejected.labels("review").inc()
            await edge.send_json(send, 400, edge.error_content(err.message, err.field, err.fix))
            return
        if judged.verdict is not None:
            self._record(endpoint, judged, judged.verdict, time.perf_counter() - started)
        else:
            self.metrics.errors.labels(endpoint.value).inc()
            fields = {"uid": judged.uid, "endpoint": endpoint.value, "error": judged.failure_message}
            review_log.error("review failed", exc_info=judged.failure, extra={"fields": fields})
        await edge.send_json(send, 200, judged.review)

    def _record(self, endpoint: Endpoint, judged: Judged, verdict: Verdict, elapsed: float) -> None:
        mode = verdict.mode.value if verdict.mode else "-"
        self.metrics.counts.count(endpoint.value, verdict.outcome.value, mode, elapsed)
        for finding in verdict.findings:
            self.metrics.counts.found(endpoint.value, finding.check)
        # Reviews without host access (or not judged at all) are the bulk: logged at debug only.
        loud = verdict.findings or verdict.outcome in (Outcome.EXEMPT, Outcome.INVALID)
        level = logging.INFO if loud else logging.DEBUG
        request = judged.request
        if review_log.isEnabledFor(level) and request is not None:
            # Each string cut to what Kubernetes allows a name: a forged review cannot make a log line
            # megabytes long.
            cut = MAX_LOGGED_LENGTH
            fields = {
                "uid": judged.uid, "endpoint": endpoint.value, "kind": request.kind[:cut],
                "namespace": request.namespace[:cut], "name": request.name[:cut],
                "operation": request.operation[:cut], "dryRun": request.dry_run,
                "decision": verdict.outcome.value, "allowed": verdict.allowed, "mode": mode,
                "findings": [f"{f.check}:{f.field}" for f in verdict.findings], "steered": verdict.steered,
                "ms": round(elapsed * 1000, 3),
            }  # fmt: skip
            if verdict.assessment is not None and verdict.assessment.invalid:
                fields["invalid"] = verdict.assessment.invalid[:MAX_LOGGED_LENGTH]
            logs.log_fields(review_log, level, "review", fields)
