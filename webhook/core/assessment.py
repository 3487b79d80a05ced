"""One assessment per request: what the pod asks of the host, where it can land, what that does there.

`assess` reads the request once: is it judged at all (operation, kind, exemptions, mode), the findings
(host access), the placement (the node pools its constraints and tolerations allow), and for each of
those pools the worst consequence of the findings under that pool's host contract: *breaks*, *degrades*
or *works* (general-purpose pools: always works). When it breaks on some pools and not on others, the
steering plan is computed once, here, and proven by placing the steered spec again. `mutate` and
`validate` (decision.py), `check` and `scan` all read this one value.
"""

from __future__ import annotations

import enum
import marshal
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property, partial
from typing import Any

from webhook.core import policy
from webhook.core.config import MAX_MEMO_KEY_BYTES, NAMESPACE_MODE_LABEL, Config, Mode, SteeringStrategy
from webhook.core.contracts import Effect, worst
from webhook.core.mutation import SteeringPlan, SteeringRefusal, steer_away_from
from webhook.core.placement import (
    Constraints,
    Inventory,
    NodeClass,
    Placement,
    Pool,
    place,
    place_by_evidence,
)
from webhook.core.placement.evidence import evidence_exclusions
from webhook.core.placement.exclusion import exclude_pools, general_selector
from webhook.core.policy import Consequence, Finding
from webhook.core.profiles import PROFILE_LABEL
from webhook.core.review import Request
from webhook.core.workloads import CONTAINER_FIELDS, POD_TEMPLATE_PATHS, PodSpecView, pod_spec_view
from webhook.errors import ManifestError

EVIDENCE_ONLY_NOTE = "no current node inventory: placement judged by node label evidence alone"
# A pool can scale up from zero nodes (the cluster autoscaler, AKS node auto-provisioning) and a node can be
# named before it registers: what matches no known node is judged against the nodes that could come.
NO_KNOWN_NODE_NOTE = (
    "matches none of the {count} known nodes: judged by node label evidence, as for nodes yet to come"
)
# Pod fields that decide where a pod lands; a pod UPDATE that changes none of them is not judged again.
PLACEMENT_FIELDS = ("nodeName", "nodeSelector", "affinity", "tolerations", "schedulingGates")


def nodes(count: int) -> str:
    return f"{count} node" if count == 1 else f"{count} nodes"


class Status(enum.Enum):
    SKIPPED = "skipped"  # not a request we judge (DELETE, status update, other kinds)
    EXEMPT = "exempt"
    OFF = "off"
    CLEAN = "clean"  # no host access
    JUDGED = "judged"
    INVALID = "invalid"  # judged, but the object cannot be read (`Assessment.invalid` says where)


@dataclass(frozen=True)
class PoolEffect:
    """One node pool the pod can land on, the worst consequence of its host access there, and why."""

    pool: Pool  # a scheduling group standing for the pool (a pool spanning zones has several)
    effect: Effect
    reasons: tuple[str, ...] = ()  # "<check> <field>: <why>", one per finding with that effect
    nodes: int | None = None  # the pool's node count; None for imagined pools

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def profile(self) -> str:
        return self.pool.classification.profile

    def describe(self) -> str:
        details = [d for d in (self.profile, nodes(self.nodes) if self.nodes is not None else "") if d]
        return f"pool {self.name} ({', '.join(details)})" if details else f"pool {self.name}"


class PoolEffects(tuple[PoolEffect, ...]):
    """The pools a pod can land on, with what the verdicts say of them worked out once: a remembered
    judgement hands the same PoolEffects to every pod of its workload."""

    def with_effect(self, effect: Effect) -> PoolEffects:
        key = _EFFECT_KEYS[effect]
        found: PoolEffects | None = self.__dict__.get(key)
        if found is None:
            found = self.__dict__[key] = PoolEffects(p for p in self if p.effect is effect)
        return found

    @property
    def names(self) -> str:
        """`class:name` of each, comma-separated: the audit annotations' form."""
        names: str | None = self.__dict__.get("names")
        if names is None:
            names = self.__dict__["names"] = ",".join(f"{p.pool.node_class.value}:{p.name}" for p in self)
        return names

    def shown(self, limit: int = 3) -> str:
        """The first `limit` described, and how many more: the messages' form."""
        key = f"shown:{limit}"
        shown: str | None = self.__dict__.get(key)
        if shown is None:
            shown = ", ".join(p.describe() for p in self[:limit])
            shown += f" and {len(self) - limit} more" if len(self) > limit else ""
            self.__dict__[key] = shown
        return shown


NO_POOLS = PoolEffects()
_EFFECT_KEYS = {effect: f"with:{effect.value}" for effect in Effect}


@dataclass(frozen=True)
class Assessment:
    request: Request
    status: Status
    pod: PodSpecView | None = None
    mode: Mode = Mode.ENFORCE
    notes: tuple[str, ...] = ()  # said with every answer: an invalid mode label, evidence-only placement
    exemption: str = ""
    findings: tuple[Finding, ...] = ()
    placement: Placement | None = None
    pools: PoolEffects = NO_POOLS  # each node pool it can land on
    plan: SteeringPlan | SteeringRefusal | None = None  # when it breaks on some pools and not others
    daemon_set: str = ""  # "namespace/name" of the DaemonSet whose pods these are
    evidence_only: bool = False
    general_selector: tuple[str, str] | None = None  # a nodeSelector that picks general pools only
    node_count: int = 0
    invalid: str = ""  # why the object cannot be read: the field, what is wrong, the fix

    def with_effect(self, effect: Effect) -> PoolEffects:
        return self.pools.with_effect(effect)

    @property
    def breaks(self) -> PoolEffects:
        return self.pools.with_effect(Effect.BREAKS)

    @property
    def degrades(self) -> PoolEffects:
        return self.pools.with_effect(Effect.DEGRADES)

    @property
    def nowhere(self) -> bool:
        return self.placement is not None and self.placement.nowhere

    @property
    def only_breaking(self) -> bool:
        """It can land somewhere, and wherever it lands it breaks."""
        return bool(self.pools) and all(p.effect is Effect.BREAKS for p in self.pools)


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


def _exemption(request: Request, config: Config) -> str:
    """An exemption the request alone decides: no need to read the object (PSA checks these first too)."""
    ex = config.exemptions
    if request.namespace in ex.namespaces:
        return "namespace"
    if request.username in ex.usernames:
        return "user"
    if request.groups & ex.groups:
        return "group"
    return ""


def _template(obj: Mapping[str, Any] | None, kind: str) -> Any:
    node: Any = obj
    for part in POD_TEMPLATE_PATHS[kind]:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _placement_fields(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    spec = (obj or {}).get("spec")
    return tuple(spec.get(f) for f in PLACEMENT_FIELDS) if isinstance(spec, Mapping) else ()


def judged(request: Request) -> bool:
    if request.operation not in ("CREATE", "UPDATE") or request.kind not in POD_TEMPLATE_PATHS:
        return False
    if request.kind == "Pod":
        # A pod's host access is immutable once created; an ephemeral container can add some, and a
        # pod not yet scheduled can gain tolerations, or (while gated) a nodeSelector or affinity: an
        # update that changes where it can land is judged like a create.
        if request.sub_resource:
            return request.sub_resource == "ephemeralcontainers"
        if request.operation == "CREATE" or request.old_object is None:
            return True
        return _placement_fields(request.object) != _placement_fields(request.old_object)
    if request.sub_resource:
        return False
    # An update that leaves the pod template as it was (a scale, a controller's ownerReferences or
    # finalizers, a status) was judged when the template was written; judging it again would block the
    # controllers rolling out the user's fix once a pool turned immutable.
    unchanged = request.operation == "UPDATE" and request.old_object is not None
    return not (
        unchanged and _template(request.object, request.kind) == _template(request.old_object, request.kind)
    )


def _daemon_set(request: Request) -> str:
    if request.kind == "DaemonSet":
        return f"{request.namespace}/{request.name}"
    if request.kind != "Pod":
        return ""
    meta = (request.object or {}).get("metadata")
    owners = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    for owner in owners if isinstance(owners, list) else ():
        if isinstance(owner, Mapping) and owner.get("kind") == "DaemonSet" and owner.get("controller"):
            return f"{request.namespace}/{owner.get('name')}"
    return ""


# The pod spec fields the checks read (policy/), and those placement reads (Constraints.of): nothing
# else of the pod goes into their answers, so these fields, with where the spec sits, key them.
CHECKED_FIELDS = ("volumes", *CONTAINER_FIELDS, "hostPID", "hostIPC", "hostNetwork")
PLACEMENT_SPEC_FIELDS = ("nodeName", "nodeSelector", "affinity", "tolerations")


def _content_key(pod: PodSpecView, fields: tuple[str, ...]) -> bytes | None:
    """`fields` of the pod spec, written out exactly: a memo key for an answer that reads nothing else of
    the pod. marshal, not JSON, because it keeps apart what JSON would merge (1e400 read as infinity and
    null, 1 and 1.0 and true, a list and a tuple): equal keys are equal fields. None for a value marshal
    cannot write (decoded JSON holds none), or past MAX_MEMO_KEY_BYTES."""
    try:
        key = marshal.dumps((pod.template_path, *(pod.spec.get(f) for f in fields)))
    except ValueError:
        return None
    return key if len(key) <= MAX_MEMO_KEY_BYTES else None  # a giant pod is judged afresh, not kept


def _evaluate(pod: PodSpecView, config: Config, key: bytes | None) -> tuple[Finding, ...]:
    """policy.evaluate, remembered per config under `key` (the content key of CHECKED_FIELDS) for the
    pods of one workload (they hold the same fields)."""
    if key is None:
        return policy.evaluate(pod, config)
    return config.memoized(("findings", key), partial(policy.evaluate, pod, config))


def _place(
    pod: PodSpecView, inventory: Inventory | None, config: Config, key: bytes | None = None
) -> Placement:
    """Where it can land: in the inventory, or without one by the label evidence. Remembered under `key`
    (the content key of PLACEMENT_SPEC_FIELDS; computed here when not given): the pods of one workload
    ask the same of the same inventory."""
    key = key if key is not None else _content_key(pod, PLACEMENT_SPEC_FIELDS)
    if inventory is None:
        if key is None:
            return place_by_evidence(Constraints.of(pod), config)
        return config.memoized(("evidence-place", key), partial(_place_by_evidence_now, pod, config))
    if key is None:
        return place(Constraints.of(pod), inventory)
    return inventory.memo.get(("place", key), partial(_place_now, pod, inventory))


def _place_by_evidence_now(pod: PodSpecView, config: Config) -> Placement:
    return place_by_evidence(Constraints.of(pod), config)


def _names_known_nodes(pod: PodSpecView, inventory: Inventory) -> bool:
    """Whether the spec lets it run only on nodes that exist now (nodeName, or `metadata.name In` in every
    term): then a node yet to come cannot take it."""
    constraints = Constraints.of(pod)
    if constraints.node_name is not None:
        return constraints.node_name in inventory.pool_of_node
    if not constraints.terms:
        return False
    for term in constraints.terms:
        names = [r for r in term.fields if r.operator == "In"]
        if not term.empty and not any(set(r.values) <= inventory.pool_of_node.keys() for r in names):
            return False
    return True


def _place_now(pod: PodSpecView, inventory: Inventory) -> Placement:
    return place(Constraints.of(pod), inventory)


class _Effects:
    """The worst consequence of the findings per profile, computed once per profile."""

    def __init__(self, findings: tuple[Finding, ...], config: Config) -> None:
        self.findings = findings
        self.config = config
        self._cache: dict[str, tuple[Effect, tuple[str, ...]]] = {}
        self._signature: tuple[Any, ...] | None = None

    def of(self, pool: Pool) -> tuple[Effect, tuple[str, ...]]:
        if pool.node_class is NodeClass.GENERAL:
            return Effect.WORKS, ()
        name = pool.classification.profile_name
        if name not in self._cache:
            # Remembered across reviews under all that the answer reads of the findings: the pods of
            # one workload find the same host access, review after review.
            key = ("effects", name, self.signature)
            self._cache[name] = self.config.memoized(key, partial(self._judge, name), self.size)
        return self._cache[name]

    @cached_property
    def size(self) -> int:
        """The length of the text in `signature`, for the memo's bound."""
        return sum(len(f.field) + len(f.detail) + sum(len(p.path) for p in f.paths) for f in self.findings)

    @property
    def signature(self) -> tuple[Any, ...]:
        """All that an effect reads of the findings."""
        if self._signature is None:
            self._signature = tuple(
                (f.check, f.field, f.detail, f.paths, f.runs_package_manager) for f in self.findings
            )
        return self._signature

    def _judge(self, name: str) -> tuple[Effect, tuple[str, ...]]:
        judged = [(f, self._consequence(f, name)) for f in self.findings]
        effect = worst(c.effect for _, c in judged)
        return effect, tuple(_reason(f, c) for f, c in judged if c.effect is effect)

    def _consequence(self, finding: Finding, profile_name: str) -> Consequence:
        # What a consequence depends on (policy.consequence): the check, the paths and what runs, the
        # OS's contract, the config. Remembered across reviews: pods of one workload ask the same.
        config = self.config

        def compute() -> Consequence:
            contract, os_name = config.contract_of(profile_name)
            return policy.consequence(finding, contract, os_name, config)

        key = ("consequence", profile_name, finding.check, finding.paths, finding.runs_package_manager)
        return config.memoized(key, compute, sum(len(p.path) for p in finding.paths))


def _pool_effects(placement: Placement, effects: _Effects, inventory: Inventory | None) -> PoolEffects:
    """Each node pool it can land on (once, though it spans zones) and the findings' effect there."""
    named: dict[tuple[str, Any], PoolEffect] = {}
    for group in placement.pools:
        if group.key not in named:
            effect, reasons = effects.of(group)
            nodes = inventory.nodes_per_pool.get(group.name) if inventory is not None else None
            named[group.key] = PoolEffect(group, effect, reasons, nodes)
    return PoolEffects(named.values())


def _reason(finding: Finding, consequence: Consequence) -> str:
    return f"{finding.check} {finding.field}: {consequence.why}" if consequence.why else finding.message


def _key(pool: Pool) -> tuple[str, tuple[str, ...]]:
    return (pool.name, pool.members)


def unreadable(
    request: Request, error: ManifestError, *, config: Config, namespace_labels: Mapping[str, str]
) -> Assessment:
    """The assessment of a judged request whose object `assess` could not read (it raised `error`)."""
    mode, _ = resolve_mode(config, namespace_labels)
    return Assessment(request, Status.INVALID, mode=mode, invalid=error.describe())


def assess(
    request: Request, *, config: Config, inventory: Inventory | None, namespace_labels: Mapping[str, str]
) -> Assessment:
    """Assess one request. ManifestError (a malformed pod spec) propagates: `check` names the document,
    the admission service answers `unreadable(...)`. Exemptions and mode off are decided before the
    object is read, so an object they let through is never refused for its shape.

    `inventory` None means no trustworthy node inventory (empty or stale): placement then follows the
    configured label evidence alone, and the notes say so.
    """
    if not judged(request) or request.object is None:
        return Assessment(request, Status.SKIPPED)
    exemption = _exemption(request, config)
    if exemption:
        return Assessment(request, Status.EXEMPT, exemption=exemption)
    mode, mode_note = resolve_mode(config, namespace_labels)
    if mode is Mode.OFF:
        return Assessment(request, Status.OFF, mode=mode)
    pod = pod_spec_view(request.object, request.kind)
    if pod.string("runtimeClassName") in config.exemptions.runtime_classes:
        return Assessment(request, Status.EXEMPT, pod, exemption="runtimeClass")
    # Both keys before judging: a memo entry made from this pod holds its strings, and marshal writes
    # an object held elsewhere differently (as a reference), so a key taken later would not match the
    # same fields of the next pod.
    checked = _content_key(pod, CHECKED_FIELDS)
    placed = _content_key(pod, PLACEMENT_SPEC_FIELDS)
    findings = _evaluate(pod, config, checked)
    if request.sub_resource == "ephemeralcontainers" and request.old_object is not None:
        # Judge what the debug container adds, not the host access the running pod already had.
        before = set(policy.evaluate(pod_spec_view(request.old_object, request.kind), config))
        findings = tuple(f for f in findings if f not in before)
    if not findings:
        return Assessment(request, Status.CLEAN, pod, mode=mode)
    notes = tuple(n for n in (mode_note, "" if inventory is not None else EVIDENCE_ONLY_NOTE) if n)
    judgement = _judgement(request, pod, findings, config, inventory, checked, placed)
    return Assessment(
        request,
        Status.JUDGED,
        pod,
        mode=mode,
        notes=(*notes, *judgement.notes),
        findings=findings,
        placement=judgement.placement,
        pools=judgement.pools,
        plan=judgement.plan,
        daemon_set=_daemon_set(request),
        evidence_only=judgement.evidence_only,
        general_selector=judgement.general_selector,
        node_count=inventory.node_count if inventory is not None else 0,
    )


@dataclass(frozen=True)
class _Judgement:
    """What `assess` makes of a pod with host access, beyond its findings: where it lands, the effect
    there, the steering plan."""

    placement: Placement
    pools: PoolEffects
    plan: SteeringPlan | SteeringRefusal | None
    evidence_only: bool
    general_selector: tuple[str, str] | None
    notes: tuple[str, ...]


def _judgement(
    request: Request,
    pod: PodSpecView,
    findings: tuple[Finding, ...],
    config: Config,
    inventory: Inventory | None,
    checked: bytes | None,
    placed: bytes | None,
) -> _Judgement:
    """`_judge`, remembered per inventory (or per config, without one) for the pods of one workload.

    The key holds all it reads: the spec fields the checks read (which give the findings) and those
    placement reads, where the spec sits, what gates steering (kind, operation, subresource) and the
    shape of the pod's metadata (where the steering annotation goes). A remembered plan's patch is
    applied to this request's object, so `SteeringPlan.steered_object` is always its own, and the memo
    keeps no request's object (a pod's annotations alone may be megabytes). Keys past MAX_MEMO_KEY_BYTES
    together are not kept, as in every memo."""
    if checked is None or placed is None or request.sub_resource == "ephemeralcontainers":
        return _judge(request, pod, findings, config, inventory, placed)
    key = ("judgement", config.memo, checked, placed, request.kind, request.operation, request.sub_resource,
           _metadata_shape(pod))  # fmt: skip
    memo = inventory.judgements if inventory is not None else config.judgements

    def compute() -> _Judgement:
        judged = _judge(request, pod, findings, config, inventory, placed)
        if isinstance(judged.plan, SteeringPlan):
            judged = replace(judged, plan=SteeringPlan(judged.plan.patch, {}, judged.plan.steered_from))
        return judged

    judgement = memo.get(key, compute, len(checked) + len(placed))
    plan = judgement.plan
    if isinstance(plan, SteeringPlan) and request.object is not None:
        judgement = replace(judgement, plan=SteeringPlan(plan.patch, request.object, plan.steered_from))
    return judgement


def _metadata_shape(pod: PodSpecView) -> int:
    """What the steering patch reads of the pod's metadata (mutation._annotation_ops)."""
    if not pod.metadata:
        return 0
    return 1 if pod.metadata.get("annotations") is None else 2


def _judge(
    request: Request,
    pod: PodSpecView,
    findings: tuple[Finding, ...],
    config: Config,
    inventory: Inventory | None,
    placed: bytes | None,
) -> _Judgement:
    notes: tuple[str, ...] = ()
    placement = _place(pod, inventory, config, placed)
    if inventory is not None and placement.nowhere and not _names_known_nodes(pod, inventory):
        notes = (NO_KNOWN_NODE_NOTE.format(count=inventory.node_count),)
        inventory = None
        placement = _place(pod, None, config, placed)
    effects = _Effects(findings, config)
    if inventory is None:
        pools = _pool_effects(placement, effects, inventory)
    else:
        # Keyed by the groups it lands on, not by its constraints: a DaemonSet's pods, each pinned to its
        # node, land on the same few pools.
        key = ("pool-effects", config.memo, placement.mask, effects.signature)
        pools = inventory.memo.get(key, partial(_pool_effects, placement, effects, inventory), effects.size)
    suggestion = None
    plan = None
    breaking = [p.effect is Effect.BREAKS for p in pools]
    if any(breaking):
        if inventory is not None:
            suggestion = inventory.memo.get(("general_selector",), partial(general_selector, inventory))
        if not all(breaking):  # not `only_breaking`: it can land somewhere it does not break
            plan = _plan(request, pod, config, inventory, placement, effects)
    return _Judgement(placement, pools, plan, inventory is None, suggestion, notes)


def _plan(
    request: Request,
    pod: PodSpecView,
    config: Config,
    inventory: Inventory | None,
    placement: Placement,
    effects: _Effects,
) -> SteeringPlan | SteeringRefusal:
    """Steer it off exactly the pools it breaks on, and prove it: the steered spec, placed again, lands
    on no pool it breaks on and (affinity) on every other pool it could land on before."""
    if not config.steering.enabled:
        return SteeringRefusal("steering is disabled")
    if request.sub_resource or (request.kind == "Pod" and request.operation == "UPDATE"):
        return SteeringRefusal("a pod that exists cannot be moved")
    if request.object is None:
        return SteeringRefusal("there is no object to change")
    breaking_here = [g for g in placement.pools if effects.of(g)[0] is Effect.BREAKS]
    remaining: tuple[Pool, ...] = ()
    if inventory is None:
        requirements = evidence_exclusions(breaking_here, config)
    else:
        breaking_all = 0
        for i, group in enumerate(inventory.pools):
            if effects.of(group)[0] is Effect.BREAKS:
                breaking_all |= 1 << i
        targets = placement.mask & breaking_all
        requirements, left = inventory.memo.get(
            ("exclude_pools", config.memo, breaking_all, targets),
            partial(exclude_pools, inventory, breaking_all, targets, config),
        )
        remaining = tuple(g for i, g in enumerate(inventory.pools) if left >> i & 1)
    if remaining and config.steering.strategy is SteeringStrategy.AFFINITY:
        return _unlabelled(remaining)
    steered_from = ",".join(sorted({g.classification.profile for g in breaking_here}))
    plan = steer_away_from(request.object, pod, requirements, steered_from, config)
    if isinstance(plan, SteeringRefusal):
        return plan
    after = _place(pod_spec_view(plan.steered_object, request.kind), inventory, config)
    if after.nowhere:
        return SteeringRefusal("steering would leave no node it can land on")
    still = [g for g in after.pools if effects.of(g)[0] is Effect.BREAKS]
    if still:
        return _unlabelled(tuple(still))
    if config.steering.strategy is SteeringStrategy.AFFINITY:
        # Imagined pools (no inventory) can only be excluded by their evidence label as a whole: there,
        # losing an immutable OS it would work on is the price of steering blind; a general one, never.
        kept = {_key(g) for g in placement.pools if effects.of(g)[0] is not Effect.BREAKS
                and (inventory is not None or g.node_class is NodeClass.GENERAL)}  # fmt: skip
        lost = kept - {_key(g) for g in after.pools}
        if lost:
            # The chooser never picks a value a kept pool carries, so this is a defect: refuse, loudly.
            return SteeringRefusal(f"steering would also exclude pools it works on ({len(lost)} groups)")
    return plan


def _unlabelled(pools: tuple[Pool, ...]) -> SteeringRefusal:
    described = list(dict.fromkeys(p.describe() for p in pools))
    verb = "carries" if len(described) == 1 else "carry"
    return SteeringRefusal(
        f"{', '.join(described)} {verb} no node label that only pools it breaks on carry",
        fix=f"label those nodes {PROFILE_LABEL}=<profile> (the node labeller can) so steering can exclude "
        "them, or fix the host access",
    )
