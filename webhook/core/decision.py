"""The two webhooks as two functions of one assessment: `mutate` steers, `validate` allows, warns,
records or denies.

Only enforce changes an object: it steers a pod that breaks on some pools it can land on and not on
others away from exactly those pools. warn and audit never change an object; they say (warning) or record
(audit annotation) what enforce would do. A pod that degrades somewhere is warned about, never steered or
denied. Each request is recorded once: validation, not mutation, writes warnings about risk and the audit
annotations, except the steering warning that only mutation can give.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from webhook.core import policy
from webhook.core.api import JsonPatchOp
from webhook.core.assessment import Assessment, PoolEffect, Status, nodes
from webhook.core.config import Config, DaemonSetPolicy, Mode
from webhook.core.mutation import SteeringPlan, SteeringRefusal
from webhook.core.policy import Finding
from webhook.core.review import cap

MAX_ANNOTATION = 1000


class Outcome(enum.Enum):
    """What happened to one request; also the `decision` label of metrics and logs."""

    SKIPPED = "skipped"  # not a request we judge (DELETE, status update, other kinds)
    UNCHANGED = "unchanged"  # mutation judged it and had nothing to change
    EXEMPT = "exempt"
    OFF = "off"
    CLEAN = "clean"  # no host access
    WORKS = "works"  # host access that works on every pool it can land on
    DEGRADED = "degraded"  # works, but degrades on some pools: warned
    NOWHERE = "nowhere"  # no node in the inventory matches it
    STEERED = "steered"
    DENIED = "denied"
    WARNED = "warned"  # would be steered or denied in enforce
    AUDITED = "audited"  # would be steered or denied in enforce; recorded only
    INVALID = "invalid"  # the object cannot be read: denied (code 400) in enforce, warned or recorded else


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    allowed: bool = True
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit: Mapping[str, str] = field(default_factory=dict)
    patch: tuple[JsonPatchOp, ...] = ()
    assessment: Assessment | None = None

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.assessment.findings if self.assessment else ()

    @property
    def mode(self) -> Mode | None:
        a = self.assessment
        judged = (Status.JUDGED, Status.CLEAN, Status.OFF, Status.INVALID)
        return a.mode if a is not None and a.status in judged else None

    @property
    def steered(self) -> bool:
        return self.outcome is Outcome.STEERED


def _first_reason(pools: Sequence[PoolEffect]) -> str:
    return pools[0].reasons[0] if pools and pools[0].reasons else ""


def _steers(a: Assessment, config: Config) -> bool:
    """Whether enforce steers this one: it breaks somewhere, not everywhere, and steering is allowed."""
    if not a.breaks or a.only_breaking:
        return False
    return not (a.daemon_set and config.steering.daemon_sets is not DaemonSetPolicy.STEER)


def _coverage(a: Assessment) -> str:
    """For a DaemonSet: the coverage it loses, e.g. `DaemonSet monitoring/x will not run on pool acl
    (3 nodes)`."""
    if not a.daemon_set:
        return ""
    lost = ", ".join(
        f"pool {p.name}" + (f" ({nodes(p.nodes)})" if p.nodes is not None else "") for p in a.breaks
    )
    return f"DaemonSet {a.daemon_set} will not run on {lost}"


def _audit(a: Assessment, outcome: Outcome, **extra: str) -> dict[str, str]:
    audit = {"decision": outcome.value, "mode": a.mode.value}
    if a.findings:
        audit["findings"] = cap(",".join(f"{f.check}:{f.field}" for f in a.findings), MAX_ANNOTATION)
    if a.placement is not None:
        audit["lands-on"] = cap(a.pools.names, MAX_ANNOTATION)
    if a.breaks:
        audit["breaks-on"] = cap(a.breaks.names, MAX_ANNOTATION)
    if a.degrades:
        audit["degrades-on"] = cap(a.degrades.names, MAX_ANNOTATION)
    return audit | extra


def _fix(a: Assessment, refusal: SteeringRefusal | None) -> str:
    checks = dict.fromkeys(
        f.check for f in a.findings if any(f.field in r for p in a.breaks for r in p.reasons)
    )
    own = "; ".join(policy.fix(c) for c in checks) or "drop the host access"
    if refusal is not None and refusal.fix:
        return f"{refusal.fix}; or {own}"
    if a.pod is not None and a.pod.string("nodeName"):
        return f"{own}; or pin it to a general-purpose node"
    where = "a general-purpose pool"
    if a.general_selector is not None:
        key, value = a.general_selector
        where += f" (nodeSelector {key}: {value})"
    advice = f"{own}; or schedule it on {where}"
    if a.mode is Mode.ENFORCE:
        advice += " or ask for an exemption"
    return advice


def _risk(a: Assessment, config: Config) -> tuple[str, str, SteeringRefusal | None]:
    """(headline, explanation, refusal) for a pod that breaks on pools it can land on."""
    breaks = a.breaks.shown()
    details = "; ".join(r for p in a.breaks[:1] for r in p.reasons)
    if a.only_breaking:
        return f"breaks on every pool it can land on: {breaks}", details, None
    refusal = a.plan if isinstance(a.plan, SteeringRefusal) else None
    if a.daemon_set and config.steering.daemon_sets is DaemonSetPolicy.DENY:
        return f"breaks on {breaks} (steering.daemonSets: deny)", details, None
    if refusal is not None:
        return f"breaks on {breaks} and cannot be steered away ({refusal.reason})", details, refusal
    return f"breaks on {breaks} and was not steered away (is the mutating webhook installed?)", details, None


def _invalid(a: Assessment) -> Verdict:
    """An object that cannot be read cannot be placed or judged: in enforce it is refused, as Pod Security
    Admission refuses an object it cannot decode, rather than admitted unjudged; warn says so, audit
    records it. The apiserver itself never sends such an object: only a forged or broken client does."""
    audit = {"decision": Outcome.INVALID.value, "mode": a.mode.value}
    audit["invalid"] = cap(a.invalid, MAX_ANNOTATION)
    if a.mode is Mode.ENFORCE:
        message = f"{a.request.display_name} cannot be judged: {a.invalid}"
        return Verdict(Outcome.INVALID, allowed=False, message=message, audit=audit, assessment=a)
    warnings = () if a.mode is Mode.AUDIT else (f"cannot be judged, enforce mode would deny it: {a.invalid}",)
    return Verdict(Outcome.INVALID, warnings=warnings, audit=audit, assessment=a)


def mutate(a: Assessment, config: Config) -> Verdict:
    """The mutating webhook: in enforce, steer a pod off the pools it breaks on; nothing else."""
    if a.status is Status.INVALID:
        return _invalid(a) if a.mode is Mode.ENFORCE else Verdict(Outcome.UNCHANGED, assessment=a)
    if a.status is not Status.JUDGED:
        return Verdict(_SIMPLE[a.status], assessment=a)
    if a.mode is not Mode.ENFORCE or not _steers(a, config) or not isinstance(a.plan, SteeringPlan):
        return Verdict(Outcome.UNCHANGED, assessment=a)
    steered = f"steered away from {a.breaks.shown()}"
    warnings = [steered, _first_reason(a.breaks), *([_coverage(a)] if a.daemon_set else []), *a.notes]
    audit = _audit(a, Outcome.STEERED, steered=a.plan.steered_from)
    return Verdict(Outcome.STEERED, warnings=tuple(warnings), audit=audit, patch=a.plan.patch, assessment=a)


_SIMPLE = {Status.SKIPPED: Outcome.SKIPPED, Status.EXEMPT: Outcome.EXEMPT, Status.OFF: Outcome.OFF,
           Status.CLEAN: Outcome.CLEAN}  # fmt: skip


def validate(a: Assessment, config: Config) -> Verdict:
    """The validating webhook: allow, warn, record or deny what reaches it (after mutation)."""
    if a.status is Status.EXEMPT:
        return Verdict(Outcome.EXEMPT, audit={"exempt": a.exemption}, assessment=a)
    if a.status is Status.INVALID:
        return _invalid(a)
    if a.status is not Status.JUDGED:
        return Verdict(_SIMPLE[a.status], assessment=a)
    notes = a.notes
    if a.nowhere:
        warning = f"matches no node of the {a.node_count} known; not judged"
        return Verdict(
            Outcome.NOWHERE, warnings=(warning, *notes), audit=_audit(a, Outcome.NOWHERE), assessment=a
        )
    if not a.breaks:
        if not a.degrades:
            return Verdict(Outcome.WORKS, warnings=notes, audit=_audit(a, Outcome.WORKS), assessment=a)
        audit = _audit(a, Outcome.DEGRADED)
        if a.mode is Mode.AUDIT:
            return Verdict(Outcome.DEGRADED, warnings=notes, audit=audit, assessment=a)
        headline = f"degrades on {a.degrades.shown()}"
        reasons = list(dict.fromkeys(r for p in a.degrades for r in p.reasons))
        return Verdict(Outcome.DEGRADED, warnings=(headline, *reasons, *notes), audit=audit, assessment=a)
    headline, details, refusal = _risk(a, config)
    would = "steer" if _steers(a, config) and isinstance(a.plan, SteeringPlan) else "deny"
    # steering.daemonSets: warn admits the DaemonSet and the pods its controller pins to each node alike.
    daemon_warn = bool(a.daemon_set) and config.steering.daemon_sets is DaemonSetPolicy.WARN
    if a.mode is Mode.ENFORCE and not daemon_warn:
        fix = _fix(a, refusal)
        message = f"{a.request.display_name} {headline}. {details}. Fix: {fix}."
        message += "".join(f" Note: {n}." for n in notes)
        audit = _audit(a, Outcome.DENIED)
        return Verdict(Outcome.DENIED, allowed=False, message=message, audit=audit, assessment=a)
    if a.mode is Mode.AUDIT:
        return Verdict(Outcome.AUDITED, warnings=notes, audit=_audit(a, Outcome.AUDITED, would=would),
                       assessment=a)  # fmt: skip
    # The pools and the reason go on lines of their own: one warning is capped at 240 characters.
    if daemon_warn:
        lines = [_coverage(a).replace("will not run", "will fail"), _first_reason(a.breaks)]
    elif would == "steer":
        lines = [f"would steer away from {a.breaks.shown()} in enforce mode", _first_reason(a.breaks)]
        lines += [_coverage(a)] if a.daemon_set else []
    else:
        lines = [f"would be denied in enforce mode: {headline}", details, f"fix: {_fix(a, refusal)}"]
    audit = _audit(a, Outcome.WARNED, would=would if not daemon_warn else "fail")
    return Verdict(Outcome.WARNED, warnings=(*lines, *notes), audit=audit, assessment=a)
