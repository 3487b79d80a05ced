"""Steering: JSONPatch that keeps a pod spec off the pools it breaks on while keeping the user's constraints.

Affinity strategy: append the exclusions (e.g. `immutable-os.io/profile NotIn [azure-container-linux]`,
chosen by placement/exclusion.py) to every nodeSelectorTerm, since terms are ORed and expressions ANDed;
add a term if there is none.
nodeSelector strategy: set the configured labels of a general pool. Patches point into the object
actually reviewed (under spec.template for a Deployment) and only add, so they apply to it as computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from webhook.core.api import AddOp, JsonPatchOp, pointer
from webhook.core.config import STEERED_ANNOTATION, Config, SelectorRequirement, SteeringStrategy
from webhook.core.placement.analysis import REQUIRED_AFFINITY
from webhook.core.workloads import PodSpecView

__all__ = ["SteeringPlan", "SteeringRefusal", "apply_patch", "steer_away_from"]


def _term_excludes(expressions: Sequence[Any], req: SelectorRequirement) -> bool:
    for e in expressions:
        if not isinstance(e, Mapping) or e.get("key") != req.key:
            continue
        op, values = e.get("operator"), set(e.get("values") or [])
        if op == "DoesNotExist" and req.operator in ("DoesNotExist", "NotIn"):
            return True
        if op == req.operator and (op in ("Exists", "DoesNotExist") or set(req.values) <= values):
            return True
    return False


@dataclass(frozen=True)
class SteeringPlan:
    """The patch for the reviewed object `source`, and (`steered_object`, made when first asked for)
    the object with it applied, for the caller to place again."""

    patch: tuple[JsonPatchOp, ...]
    source: Mapping[str, Any]
    steered_from: str = ""  # the OSes it is steered away from, as the annotation records them

    @cached_property
    def steered_object(self) -> Mapping[str, Any]:
        return apply_patch(self.source, self.patch)


@dataclass(frozen=True)
class SteeringRefusal:
    reason: str
    fix: str = ""  # what a person does about it, when that is more specific than the general advice


def _add(path: str, value: Any) -> AddOp:
    return {"op": "add", "path": path, "value": value}


def _affinity_ops(
    pod: PodSpecView, excl: tuple[SelectorRequirement, ...], base: tuple[str, ...]
) -> list[JsonPatchOp]:
    wire = [r.to_wire() for r in excl]
    nested: Any = {"nodeSelectorTerms": [{"matchExpressions": wire}]}
    # Walk down affinity/nodeAffinity/required...; add the missing level whole.
    for depth in range(len(REQUIRED_AFFINITY), 0, -1):
        if pod.mapping(*REQUIRED_AFFINITY[:depth]) is not None:
            break
        nested = {REQUIRED_AFFINITY[depth - 1]: nested}
    else:
        depth = 0
    if depth < len(REQUIRED_AFFINITY):
        key = REQUIRED_AFFINITY[depth]
        return [_add(pointer(*base, *REQUIRED_AFFINITY[:depth], key), nested[key])]
    required = pod.mapping(*REQUIRED_AFFINITY) or {}
    terms = required.get("nodeSelectorTerms") or []
    terms_path = (*base, *REQUIRED_AFFINITY, "nodeSelectorTerms")
    if not terms:
        return [_add(pointer(*terms_path), nested["nodeSelectorTerms"])]
    ops: list[JsonPatchOp] = []
    for i, term in enumerate(terms):
        expressions = term.get("matchExpressions") or []
        if not expressions and not term.get("matchFields"):
            continue  # an empty term matches no node; an exclusion would make it match general ones
        missing = [r.to_wire() for r in excl if not _term_excludes(expressions, r)]
        if not missing:
            continue
        if not expressions:
            ops.append(_add(pointer(*terms_path, i, "matchExpressions"), missing))
        else:
            ops.extend(_add(pointer(*terms_path, i, "matchExpressions", "-"), m) for m in missing)
    return ops


def _node_selector_ops(
    pod: PodSpecView, labels: Mapping[str, str], base: tuple[str, ...]
) -> list[JsonPatchOp] | SteeringRefusal:
    current = pod.mapping("nodeSelector")
    for key, value in labels.items():
        if current and key in current and current[key] != value:
            return SteeringRefusal(
                f"nodeSelector {key}={current[key]} conflicts with steering label {key}={value}"
            )
    missing = {k: v for k, v in labels.items() if not current or k not in current}
    if not missing:
        return []
    if current is None:
        return [_add(pointer(*base, "nodeSelector"), dict(sorted(missing.items())))]
    return [_add(pointer(*base, "nodeSelector", k), v) for k, v in sorted(missing.items())]


def _annotation_ops(pod: PodSpecView, value: str) -> list[JsonPatchOp]:
    meta = (*pod.template_path, "metadata")
    template: Any = pod.metadata
    if not template:  # none, null, [] or {}: add the whole metadata object
        return [_add(pointer(*meta), {"annotations": {STEERED_ANNOTATION: value}})]
    if "annotations" not in template or template["annotations"] is None:
        return [_add(pointer(*meta, "annotations"), {STEERED_ANNOTATION: value})]
    return [_add(pointer(*meta, "annotations", STEERED_ANNOTATION), value)]


def steer_away_from(
    obj: Mapping[str, Any],
    pod: PodSpecView,
    requirements: Sequence[SelectorRequirement],
    steered_from: str,
    config: Config,
) -> SteeringPlan | SteeringRefusal:
    """Patch `obj` (the reviewed object holding `pod`) so its pods meet `requirements` (affinity
    strategy) or carry the configured general-pool labels (nodeSelector strategy); the annotation
    records `steered_from`, the OSes it was steered away from."""
    base = (*pod.template_path, "spec")
    ops: list[JsonPatchOp]
    if config.steering.strategy is SteeringStrategy.NODE_SELECTOR:
        result = _node_selector_ops(pod, config.steering.node_selector, base)
        if isinstance(result, SteeringRefusal):
            return result
        ops = result
    else:
        if not requirements:
            return SteeringRefusal("no node label tells those pools apart")
        ops = _affinity_ops(pod, tuple(requirements), base)
    if not ops:
        return SteeringRefusal("already steered, yet it can still land there")
    ops += _annotation_ops(pod, steered_from)
    return SteeringPlan(tuple(ops), obj, steered_from)


def apply_patch(obj: Mapping[str, Any], ops: Sequence[JsonPatchOp]) -> dict[str, Any]:
    """Apply our add-only patches to `obj` without changing it (RFC 6902 `add`, `-` appends).

    Copy on write: only the containers along each op's path are copied, the rest is shared with `obj`,
    so steering a large pod costs what the patch touches, not what the pod holds. The op values are
    shared too: the result is for reading (placing it again), like the patch itself.
    """
    root: dict[str, Any] = dict(obj)
    copied = {id(root)}

    def own(container: Any) -> Any:
        clone = list(container) if isinstance(container, list) else dict(container)
        copied.add(id(clone))
        return clone

    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target: Any = root
        for part in parts[:-1]:
            key: Any = int(part) if isinstance(target, list) else part
            child = target[key]
            if id(child) not in copied:
                child = target[key] = own(child)
            target = child
        last = parts[-1]
        value = op["value"]
        if isinstance(target, list):
            if last == "-":
                target.append(value)
            else:
                target.insert(int(last), value)
        else:
            target[last] = value
    return root
