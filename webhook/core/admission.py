"""The decision: review → findings → placement → verdict → AdmissionReview response, all pure.

`read_review` turns a wire review into a `Request` (or a ReviewError naming the missing field); `judge`
decides; `respond` finishes every response in one place (uid copied, patch type set, warnings capped).
Mutating only steers; validating allows, warns, records or denies, so each request is judged once.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from webhook.core import policy
from webhook.core.api import (
    ADMISSION_API_VERSION,
    ADMISSION_KIND,
    AdmissionResponse,
    AdmissionReview,
    JsonPatchOp,
)
from webhook.core.config import NAMESPACE_MODE_LABEL, PROFILE_LABEL, Config, Mode, Severity
from webhook.core.mutation import SteeringRefusal, apply_patch, steer_away_from
from webhook.core.placement import (
    Constraints,
    Inventory,
    NodeClass,
    Placement,
    Pool,
    place,
    place_by_evidence,
)
from webhook.core.policy import Finding
from webhook.core.workloads import POD_TEMPLATE_PATHS, PodSpecView, pod_spec_view
from webhook.errors import ManifestError, ReviewError

WARNING_PREFIX = "immutable-os: "
MAX_WARNINGS = 6
MAX_WARNING_LENGTH = 240  # the apiserver truncates long warnings; kubectl prints each on one line
MAX_MESSAGE_LENGTH = 1500
EVIDENCE_ONLY_NOTE = "no current node inventory: placement judged by node label evidence alone"


class Endpoint(enum.Enum):
    MUTATE = "mutate"
    VALIDATE = "validate"


class Outcome(enum.Enum):
    """What happened to one request; also the `decision` label of metrics and logs."""

    SKIPPED = "skipped"  # not a request we judge (DELETE, status update, other kinds)
    UNCHANGED = "unchanged"  # mutation judged it and had nothing to steer
    EXEMPT = "exempt"
    OFF = "off"
    CLEAN = "clean"  # no host access
    GENERAL = "general"  # host access, but it only lands on general-purpose nodes
    NOWHERE = "nowhere"  # no node in the inventory matches it
    STEERED = "steered"
    DENIED = "denied"
    WARNED = "warned"
    AUDITED = "audited"


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


def _require(data: Any, key: str, where: str, kind: type) -> Any:
    value = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(value, kind):
        raise ReviewError(
            f"missing or not a {kind.__name__}", field=f"{where}{key}", fix="send a v1 AdmissionReview"
        )
    return value


def _object_name(obj: Mapping[str, Any] | None) -> str:
    """The object's name; before the apiserver generates one (mutation sees none), `prefix-*`."""
    meta = (obj or {}).get("metadata") or {}
    if not isinstance(meta, Mapping):
        return ""
    if meta.get("name"):
        return str(meta["name"])
    return f"{meta['generateName']}*" if meta.get("generateName") else ""


def read_review(body: Any) -> Request:
    """A `Request` from a decoded AdmissionReview body; ReviewError names what is missing."""
    if not isinstance(body, Mapping):
        raise ReviewError("body is not a JSON object", field="<body>", fix="send a v1 AdmissionReview")
    if body.get("apiVersion") != ADMISSION_API_VERSION or body.get("kind") != ADMISSION_KIND:
        raise ReviewError(
            f"expected {ADMISSION_API_VERSION} {ADMISSION_KIND}, "
            f"got {body.get('apiVersion')} {body.get('kind')}",
            field="apiVersion",
            fix="set admissionReviewVersions: [v1] in the webhook configuration",
        )
    request = _require(body, "request", "", Mapping)
    uid = _require(request, "uid", "request.", str)
    if not uid:
        raise ReviewError("empty uid", field="request.uid", fix="send the uid the apiserver generated")
    kind = _require(_require(request, "kind", "request.", Mapping), "kind", "request.kind.", str)
    operation = _require(request, "operation", "request.", str)
    user = request.get("userInfo") or {}
    if not isinstance(user, Mapping):
        raise ReviewError(
            "not an object", field="request.userInfo", fix="send the userInfo the apiserver sent"
        )
    groups = user.get("groups") or []
    obj = request.get("object")
    if obj is not None and not isinstance(obj, Mapping):
        raise ReviewError("not an object", field="request.object", fix="send the object under review")
    old = request.get("oldObject")
    if old is not None and not isinstance(old, Mapping):
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
        name=str(request.get("name") or _object_name(obj)),
        username=str(user.get("username") or ""),
        groups=frozenset(str(g) for g in groups) if isinstance(groups, list) else frozenset(),
        dry_run=bool(request.get("dryRun", False)),
        object=obj,
        old_object=old,
    )


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    allowed: bool = True
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit: Mapping[str, str] = field(default_factory=dict)
    patch: tuple[JsonPatchOp, ...] = ()
    findings: tuple[Finding, ...] = ()
    placement: Placement | None = None
    mode: Mode | None = None

    @property
    def steered(self) -> bool:
        return self.outcome is Outcome.STEERED


def resolve_mode(config: Config, namespace_labels: Mapping[str, str]) -> tuple[Mode, str]:
    """The namespace label overrides the default; an invalid value fails safe to enforce, like PSA."""
    raw = namespace_labels.get(NAMESPACE_MODE_LABEL)
    if raw is None:
        return config.mode, ""
    try:
        return Mode(raw), ""
    except ValueError:
        allowed = ", ".join(m.value for m in Mode)
        return Mode.ENFORCE, f"namespace label {NAMESPACE_MODE_LABEL}={raw} is invalid ({allowed}); enforcing"


def _exemption(request: Request, pod: PodSpecView, config: Config) -> str:
    ex = config.exemptions
    if request.namespace in ex.namespaces:
        return "namespace"
    if request.username in ex.usernames:
        return "user"
    if request.groups & ex.groups:
        return "group"
    if pod.string("runtimeClassName") in ex.runtime_classes:
        return "runtimeClass"
    return ""


def _template(obj: Mapping[str, Any] | None, kind: str) -> Any:
    node: Any = obj
    for part in POD_TEMPLATE_PATHS[kind]:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _judged(request: Request) -> bool:
    if request.operation not in ("CREATE", "UPDATE") or request.kind not in POD_TEMPLATE_PATHS:
        return False
    if request.kind == "Pod":
        # A pod's host access and scheduling fields are immutable once created; only an ephemeral
        # container can add access to a running pod.
        if request.sub_resource:
            return request.sub_resource == "ephemeralcontainers"
        return request.operation == "CREATE"
    if request.sub_resource:
        return False
    # An update that leaves the pod template as it was (a scale, a controller's ownerReferences or
    # finalizers, a status) was judged when the template was written; judging it again would block the
    # controllers rolling out the user's fix once a pool turned immutable.
    unchanged = request.operation == "UPDATE" and request.old_object is not None
    return not (
        unchanged and _template(request.object, request.kind) == _template(request.old_object, request.kind)
    )


def _pools(pools: Sequence[Pool], limit: int = 3) -> str:
    shown = ", ".join(p.describe() for p in pools[:limit])
    return shown + (f" and {len(pools) - limit} more" if len(pools) > limit else "")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _audit(
    outcome: Outcome, mode: Mode, findings: Sequence[Finding], placement: Placement | None
) -> dict[str, str]:
    # The apiserver prefixes each key with the webhook's name, so keys carry no prefix of their own.
    audit = {"decision": outcome.value, "mode": mode.value}
    if findings:
        audit["findings"] = _cap(",".join(f"{f.check}:{f.field}" for f in findings), 1000)
    if placement is not None:
        audit["lands-on"] = _cap(",".join(f"{p.node_class.value}:{p.name}" for p in placement.pools), 1000)
    return audit


@dataclass(frozen=True)
class _Case:
    """Everything the verdict for one judged pod spec depends on."""

    request: Request
    pod: PodSpecView
    config: Config
    mode: Mode
    findings: tuple[Finding, ...]
    placement: Placement
    notes: tuple[str, ...]

    def verdict(self, outcome: Outcome, **kw: Any) -> Verdict:
        audit = _audit(outcome, self.mode, self.findings, self.placement) | kw.pop("audit", {})
        warnings = tuple(kw.pop("warnings", ())) + self.notes
        return Verdict(
            outcome, findings=self.findings, placement=self.placement, mode=self.mode, audit=audit,
            warnings=warnings, **kw,
        )  # fmt: skip


def _fix(case: _Case, refusal: SteeringRefusal | None) -> str:
    if case.pod.string("nodeName"):
        return "pin it to a general-purpose node, or drop the host access"
    if refusal is not None and refusal.fix:
        return refusal.fix
    return (
        "schedule it on a general-purpose pool (nodeSelector or node affinity), drop the host access, or "
        f"ask for an exemption (namespace label {NAMESPACE_MODE_LABEL}=warn)"
    )


def _judge_risky(case: _Case, refusal: SteeringRefusal | None) -> Verdict:
    """Host access, and it can (or, unsteered, may) land on immutable nodes: the mode decides."""
    immutable = case.placement.of_class(NodeClass.IMMUTABLE)
    where = (
        "can only land on immutable-OS nodes"
        if case.placement.only_immutable
        else "can land on immutable-OS nodes and was not steered away"
    )
    reason = f" ({refusal.reason})" if refusal else ""
    whys = "; ".join(dict.fromkeys(policy.why(f.check) for f in case.findings))
    blocking = [f for f in case.findings if case.config.check_settings(f.check).severity is Severity.ERROR]
    if case.mode is Mode.ENFORCE and blocking:
        details = "; ".join(f"{f.check} {f.message}" for f in case.findings)
        message = (
            f"{case.request.display_name} needs host access and {where}: {_pools(immutable)}{reason}. "
            f"{details}. Why: {whys}. Fix: {_fix(case, refusal)}."
        )
        return case.verdict(Outcome.DENIED, allowed=False, message=_cap(message, MAX_MESSAGE_LENGTH))
    if case.mode is Mode.AUDIT:
        return case.verdict(Outcome.AUDITED)
    headline = f"would be denied in enforce mode: {where}: {_pools(immutable)}{reason}"
    warnings = [headline, *(f"{f.check} {f.message}" for f in case.findings), f"fix: {_fix(case, refusal)}"]
    return case.verdict(Outcome.WARNED, warnings=warnings)


def judge(
    request: Request,
    *,
    endpoint: Endpoint,
    config: Config,
    inventory: Inventory | None,
    namespace_labels: Mapping[str, str],
) -> Verdict:
    """Decide one request. ManifestError (a malformed pod spec) propagates for the shell to report.

    `inventory` None means no trustworthy node inventory (empty or stale): placement then follows the
    configured label evidence alone, and the warnings say so.
    """
    if not _judged(request) or request.object is None:
        return Verdict(Outcome.SKIPPED)
    pod = pod_spec_view(request.object, request.kind)
    exemption = _exemption(request, pod, config)
    if exemption:
        return Verdict(Outcome.EXEMPT, audit={"exempt": exemption} if endpoint is Endpoint.VALIDATE else {})
    mode, mode_note = resolve_mode(config, namespace_labels)
    if mode is Mode.OFF:
        return Verdict(Outcome.OFF, mode=mode)
    findings = policy.evaluate(pod, config)
    if request.sub_resource == "ephemeralcontainers" and request.old_object is not None:
        # Judge what the debug container adds, not the host access the running pod already had.
        before = set(policy.evaluate(pod_spec_view(request.old_object, request.kind), config))
        findings = tuple(f for f in findings if f not in before)
    if not findings:
        return Verdict(Outcome.CLEAN, mode=mode)
    notes = tuple(n for n in (mode_note, "" if inventory is not None else EVIDENCE_ONLY_NOTE) if n)
    placement = _place(pod, config, inventory)
    case = _Case(request, pod, config, mode, findings, placement, notes)
    if endpoint is Endpoint.MUTATE:
        # Mutation only steers; warnings, audit annotations and denials are validation's, so each
        # request is recorded once.
        steering = _steer(case, inventory) if placement.both else None
        if isinstance(steering, Verdict):
            return steering
        return Verdict(Outcome.UNCHANGED, findings=findings, placement=placement, mode=mode)
    if placement.nowhere:
        known = inventory.node_count if inventory is not None else 0
        return case.verdict(Outcome.NOWHERE, warnings=[f"matches no node of the {known} known; not judged"])
    if NodeClass.IMMUTABLE not in placement.classes:
        return case.verdict(Outcome.GENERAL)
    refusal = None
    if placement.both:
        steering = _steer(case, inventory)
        refusal = (
            steering
            if isinstance(steering, SteeringRefusal)
            else SteeringRefusal("the mutating webhook did not steer it")
        )
    return _judge_risky(case, refusal)


def _place(pod: PodSpecView, config: Config, inventory: Inventory | None) -> Placement:
    constraints = Constraints.of(pod)
    if inventory is None:
        return place_by_evidence(constraints, config)
    return place(constraints, inventory)


def _steer(case: _Case, inventory: Inventory | None) -> Verdict | SteeringRefusal:
    """The steered verdict, if steering works: the patched spec must land on general pools only."""
    request, config = case.request, case.config
    if not config.steering.enabled:
        return SteeringRefusal("steering is disabled")
    if request.sub_resource or request.object is None:
        return SteeringRefusal("a running pod cannot be moved")
    immutable = case.placement.of_class(NodeClass.IMMUTABLE)
    profiles = sorted({p.classification.profile for p in immutable})
    excluded = inventory.steering_exclusions if inventory is not None else None
    plan = steer_away_from(request.object, case.pod, profiles, config, excluded=excluded)
    if isinstance(plan, SteeringRefusal):
        return plan
    steered = _place(pod_spec_view(plan.steered_object, request.kind), config, inventory)
    if steered.nowhere:
        return SteeringRefusal("steering would leave no general-purpose node it can land on")
    remaining = steered.of_class(NodeClass.IMMUTABLE)
    if remaining:
        return SteeringRefusal(
            f"{_pools(remaining)} cannot be excluded by a node label (osImage evidence only)",
            fix=f"label those nodes {PROFILE_LABEL}=<os> so steering can exclude them, "
            "or drop the host access",
        )
    checks = ", ".join(dict.fromkeys(f.check for f in case.findings))
    warning = f"{checks}: steered away from {_pools(immutable)} with node {config.steering.strategy.value}"
    return case.verdict(
        Outcome.STEERED, patch=plan.patch, warnings=[warning], audit={"steered": ",".join(profiles)}
    )


def _printable(text: str) -> str:
    """Control characters escaped: the apiserver drops a warning that holds any (they travel in a
    Warning header), and a hostPath may well contain a tab or a newline."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _cap_warnings(warnings: Sequence[str]) -> list[str]:
    capped = [_cap(_printable(WARNING_PREFIX + w), MAX_WARNING_LENGTH) for w in warnings]
    if len(capped) > MAX_WARNINGS:
        capped = [*capped[: MAX_WARNINGS - 1], f"{WARNING_PREFIX}and {len(capped) - MAX_WARNINGS + 1} more"]
    return capped


def respond(uid: str, verdict: Verdict, endpoint: Endpoint) -> AdmissionReview:
    """Finish a response: uid copied, JSONPatch only from /mutate, warnings only on allowed requests."""
    response: AdmissionResponse = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    elif verdict.warnings:
        response["warnings"] = _cap_warnings(verdict.warnings)
    if verdict.audit:
        response["auditAnnotations"] = dict(verdict.audit)
    if endpoint is Endpoint.MUTATE and verdict.patch and verdict.allowed:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(verdict.patch)).encode()).decode()
    return {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}


def errored(uid: str, message: str, *, allow: bool) -> AdmissionReview:
    """The answer when judging itself failed: the configured stance, never an HTTP 500."""
    if allow:
        verdict = Verdict(Outcome.SKIPPED, warnings=(f"not judged: {message}",))
    else:
        verdict = Verdict(
            Outcome.DENIED, allowed=False, message=f"immutable-os webhook could not judge: {message}"
        )
    return respond(uid, verdict, Endpoint.VALIDATE)


__all__ = [
    "Decision",
    "Endpoint",
    "ManifestError",
    "Outcome",
    "Request",
    "ReviewError",
    "Verdict",
    "decide",
    "errored",
    "judge",
    "read_review",
    "resolve_mode",
    "respond",
]


@dataclass(frozen=True)
class Decision:
    """Both webhooks in the order the apiserver calls them: mutate, apply the patch, validate."""

    mutated: Verdict
    validated: Verdict

    @property
    def allowed(self) -> bool:
        return self.validated.allowed

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.mutated.findings or self.validated.findings

    @property
    def placement(self) -> Placement | None:
        return self.mutated.placement or self.validated.placement

    @property
    def warnings(self) -> tuple[str, ...]:
        return (*self.mutated.warnings, *self.validated.warnings) if self.allowed else ()


def decide(
    request: Request, *, config: Config, inventory: Inventory | None, namespace_labels: Mapping[str, str]
) -> Decision:
    context: dict[str, Any] = {"config": config, "inventory": inventory, "namespace_labels": namespace_labels}
    mutated = judge(request, endpoint=Endpoint.MUTATE, **context)
    if mutated.patch and request.object is not None:
        request = replace(request, object=apply_patch(request.object, mutated.patch))
    return Decision(mutated, judge(request, endpoint=Endpoint.VALIDATE, **context))
