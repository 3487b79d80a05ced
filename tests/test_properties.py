"""Properties of the pure core, over random pod specs, workload kinds, AKS-like inventories and modes.

Steering is idempotent, its patch applies as RFC 6902 says, a steered spec lands on no pool it breaks on
and on every other pool it could reach before, and is admitted; only enforce ever patches; a read-only
mount never breaks anything; placement over pools equals a per-node brute force written here from
Kubernetes' own semantics; responses deny only in enforce and warn only when allowed. Inventories carry
AKS labels in all three shapes seen (tests/aks.py): SKU names, the family in os-sku, osImage only.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from tests import aks
from webhook.core.admission import Decision, Endpoint, Outcome, Request, Verdict, answer, decide, respond
from webhook.core.config import (
    CHECK_IDS,
    NAMESPACE_MODE_LABEL,
    STEERED_ANNOTATION,
    CheckSettings,
    Config,
    Exemptions,
    HostPathRule,
    Mode,
    Severity,
    Steering,
    SteeringStrategy,
)
from webhook.core.contracts import Effect
from webhook.core.mutation import apply_patch
from webhook.core.placement import Constraints, Inventory, Node, NodeClass, place
from webhook.core.placement.inventory import HOSTNAME_LABEL, TRANSIENT_TAINTS
from webhook.core.placement.selectors import Taint
from webhook.core.profiles import AKS_OS_SKU, PROFILE_LABEL
from webhook.core.workloads import POD_TEMPLATE_PATHS, pod_spec_view

# ---------------------------------------------------------------------------------------------------------
# Inventories: pools of AKS nodes, general and immutable, some tainted, a few odd nodes.

AGENTPOOL = "kubernetes.azure.com/agentpool"
ZONE = "topology.kubernetes.io/zone"
GENERATION = "example.com/generation"  # numeric, for Gt and Lt
TIER = "example.com/tier"
NODE_ID = "example.com/node-id"  # a second per-node label: its value is the node's name
GENERAL_SKUS = ("Ubuntu", "AzureLinux")
IMMUTABLE_SKUS = ("Flatcar", "AzureLinuxOSGuard", "AzureContainerLinux")
ZONES = ("eastus2-1", "eastus2-2", "eastus2-3")
# Values of a numeric label: integers, and valid label values Go's strconv.ParseInt(v, 10, 64) refuses
# though Python's int() reads them (the last two).
LABEL_NUMBERS = ("0", "1", "2", "7", "10", "007", "42", "1_0", "99999999999999999999")
# Values of a Gt/Lt requirement: those, and integers that are no valid label value (NewRequirement fails).
BOUND_NUMBERS = (*LABEL_NUMBERS, "-1", "+1")
TAINT_KEYS = (
    "dedicated",
    "sku",
    "CriticalAddonsOnly",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/custom",  # not a condition taint: it blocks like any other
)
TAINT_VALUES = ("", "infra", "gpu")
EFFECTS = ("NoSchedule", "NoExecute", "PreferNoSchedule")

taints = st.builds(
    Taint, st.sampled_from(TAINT_KEYS), st.sampled_from(TAINT_VALUES), st.sampled_from(EFFECTS)
)


@st.composite
def pools(draw: st.DrawFn, index: int, immutable: bool | None = None) -> list[Node]:
    """One AKS node pool; its nodes may differ by zone, generation label and condition taints."""
    forced = immutable is not None
    immutable = draw(st.booleans()) if immutable is None else immutable
    sku = draw(st.sampled_from(IMMUTABLE_SKUS if immutable else GENERAL_SKUS))
    facts = aks.skus()[sku]
    os_image, kernel = facts["osImage"], facts["kernelVersion"]
    name = f"{sku.lower()}{index}"
    scenario = draw(st.sampled_from(aks.SCENARIOS))
    if sku == "AzureLinuxOSGuard" and scenario == "osimage":
        scenario = "family"  # OS Guard's osImage is Azure Linux's: its image version is the evidence
    labels = aks.labels(name, sku, scenario=scenario, zones=0)
    for per_node in ("kubernetes.io/hostname", aks.ZONE):
        del labels[per_node]
    evidence = "aks" if forced else draw(st.sampled_from(("aks",) * 6 + ("profile-label", "unnamed")))
    if immutable and evidence == "profile-label":  # a kind-style marking instead of AKS labels
        ubuntu = aks.skus()["Ubuntu"]
        os_image, kernel = ubuntu["osImage"], ubuntu["kernelVersion"]
        labels = aks.labels(name, "Ubuntu", zones=0) | {PROFILE_LABEL: draw(st.sampled_from(
            ("flatcar", "azure-container-linux", "bottlerocket", "fedora-coreos", "locked")))}  # fmt: skip
        del labels["kubernetes.io/hostname"], labels[aks.ZONE]
    elif immutable and evidence == "unnamed":  # no pool label, no SKU label: nothing can exclude it
        labels = {"kubernetes.io/os": "linux"}
        os_image = "Flatcar Container Linux by Kinvolk 4230.2.3"
    if draw(st.booleans()):
        labels[TIER] = draw(st.sampled_from(("a", "b")))
    pool_taints = draw(st.lists(taints, max_size=2))
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True))
    nodes = []
    for i in range(draw(st.integers(1, 3))):
        node = f"aks-{name}-vmss{i:06d}"
        own = dict(labels)
        own[ZONE] = draw(st.sampled_from(zones))
        hostname = draw(st.sampled_from((node, node, node, f"host-{index}-{i}", None)))
        if hostname is not None:
            own[HOSTNAME_LABEL] = hostname
        if draw(st.integers(0, 3)) == 0:
            own[NODE_ID] = node
        generation = draw(st.sampled_from((None, *LABEL_NUMBERS)))
        if generation is not None:
            own[GENERATION] = generation
        extra = draw(st.lists(st.builds(Taint, st.sampled_from(sorted(TRANSIENT_TAINTS)), st.just(""),
                                        st.sampled_from(EFFECTS)), max_size=1))  # fmt: skip
        nodes.append(Node(node, own, tuple(pool_taints + extra), os_image, kernel))
    return nodes


@st.composite
def node_lists(draw: st.DrawFn, both_classes: bool = False) -> list[Node]:
    """1-5 pools; with `both_classes`, the first is general and the second immutable by AKS labels."""
    count = draw(st.integers(2 if both_classes else 1, 5))
    forced = {0: False, 1: True} if both_classes else {}
    return [node for i in range(count) for node in draw(pools(i, forced.get(i)))]


# ---------------------------------------------------------------------------------------------------------
# Pod specs, with constraints drawn from what the nodes carry (and a little beyond).

LABEL_KEYS = (
    AGENTPOOL,
    AKS_OS_SKU,
    ZONE,
    HOSTNAME_LABEL,
    NODE_ID,
    GENERATION,
    TIER,
    PROFILE_LABEL,
    "absent.io/x",
)
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


def values_of(key: str, nodes: Sequence[Node]) -> list[str]:
    return sorted({n.labels[key] for n in nodes if key in n.labels} | {"other"})


@st.composite
def requirements(draw: st.DrawFn, nodes: Sequence[Node]) -> dict[str, Any]:
    key = draw(st.sampled_from(LABEL_KEYS))
    operator = draw(st.sampled_from(OPERATORS))
    if operator in ("Exists", "DoesNotExist"):
        return {"key": key, "operator": operator}
    if operator in ("Gt", "Lt"):
        return {"key": draw(st.sampled_from((GENERATION, GENERATION, key))), "operator": operator,
                "values": [draw(st.sampled_from(BOUND_NUMBERS))]}  # fmt: skip
    values = draw(st.lists(st.sampled_from(values_of(key, nodes)), min_size=1, max_size=3, unique=True))
    return {"key": key, "operator": operator, "values": values}


@st.composite
def terms(draw: st.DrawFn, nodes: Sequence[Node]) -> dict[str, Any]:
    term: dict[str, Any] = {}
    expressions = draw(st.lists(requirements(nodes), max_size=2))
    if expressions or draw(st.booleans()):
        term["matchExpressions"] = expressions
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from([n.name for n in nodes] + ["aks-gone-vmss000000"]))
        term["matchFields"] = [{"key": "metadata.name", "operator": draw(st.sampled_from(("In", "NotIn"))),
                                "values": [name]}]  # fmt: skip
    return term


@st.composite
def affinities(draw: st.DrawFn, nodes: Sequence[Node]) -> dict[str, Any] | None:
    shape = draw(st.sampled_from(("none", "none", "empty", "no-node-affinity", "terms", "terms", "terms")))
    if shape == "none":
        return None
    if shape == "empty":
        return {}
    preferred = [
        {"weight": 10, "preference": {"matchExpressions": [{"key": TIER, "operator": "In", "values": ["a"]}]}}
    ]
    if shape == "no-node-affinity":
        return {"podAntiAffinity": {}} if draw(st.booleans()) else {"nodeAffinity": {"preferred"
                "DuringSchedulingIgnoredDuringExecution": preferred}}  # fmt: skip
    node_affinity: dict[str, Any] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": draw(st.lists(terms(nodes), min_size=1, max_size=3))
        }
    }
    if draw(st.booleans()):
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return {"nodeAffinity": node_affinity}


@st.composite
def tolerations(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(("", *TAINT_KEYS)))
    toleration: dict[str, Any] = {}
    if key:
        toleration["key"] = key
        operator = draw(st.sampled_from(("Equal", "Exists", None)))  # None: omitted, which means Equal
    else:
        operator = "Exists"  # the only valid operator with an empty key: tolerates every taint
    if operator is not None:
        toleration["operator"] = operator
    if operator != "Exists":
        value = draw(st.sampled_from(TAINT_VALUES))
        if value or draw(st.booleans()):
            toleration["value"] = value
    effect = draw(st.sampled_from(("", "", *EFFECTS)))
    if effect:
        toleration["effect"] = effect
    if draw(st.integers(0, 5)) == 0:
        toleration["tolerationSeconds"] = 300
    return toleration


# Paths that work on every OS here, some that break on some, and some that break everywhere.
HOST_PATHS = ("/var/log", "/", "/etc/kubernetes", "/etc", "/var/lib/kubelet", "/proc", "/opt/cni/bin", "/lib/modules",
              "/usr/local/bin", "/var/lib/agent")  # fmt: skip


@st.composite
def pod_specs(draw: st.DrawFn, nodes: Sequence[Node], host_bound: bool = False) -> dict[str, Any]:
    """A random pod spec; with `host_bound`, it writes into /usr, which breaks on every immutable OS."""
    volumes = []
    for i in range(draw(st.integers(0, 2))):
        if draw(st.integers(0, 3)):
            volumes.append({"name": f"v{i}", "hostPath": {"path": draw(st.sampled_from(HOST_PATHS))}})
        else:
            volumes.append({"name": f"v{i}", "emptyDir": {}})

    def container(name: str) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name, "image": "busybox:1.36"}
        mounts = [{"name": v["name"], "mountPath": f"/mnt/{v['name']}", "readOnly": draw(st.booleans())}
                  for v in volumes if draw(st.booleans())]  # fmt: skip
        if mounts:
            c["volumeMounts"] = mounts
        return c

    spec: dict[str, Any] = {"containers": [container(f"c{i}") for i in range(draw(st.integers(1, 2)))]}
    if host_bound:
        volumes.append({"name": "tools", "hostPath": {"path": "/usr/local/bin"}})
        spec["containers"][0].setdefault("volumeMounts", []).append({"name": "tools", "mountPath": "/tools"})
    if draw(st.booleans()):
        spec["initContainers"] = [container("init")]
    if volumes:
        spec["volumes"] = volumes
    for flag in ("hostPID", "hostIPC", "hostNetwork"):
        if draw(st.integers(0, 4)) == 0:
            spec[flag] = draw(st.booleans())
    if draw(st.integers(0, 20 if host_bound else 7)) == 0:
        spec["nodeName"] = draw(st.sampled_from([n.name for n in nodes] + ["aks-gone-vmss000000"]))
    if draw(st.integers(0, 4 if host_bound else 2)) == 0:
        keys = draw(st.lists(st.sampled_from(LABEL_KEYS), min_size=1, max_size=2, unique=True))
        spec["nodeSelector"] = {k: draw(st.sampled_from(values_of(k, nodes))) for k in keys}
    affinity = draw(affinities(nodes))
    if affinity is not None:
        spec["affinity"] = affinity
    toleration_list = draw(st.lists(tolerations(), max_size=3))
    if host_bound and draw(st.booleans()):
        toleration_list.insert(0, {"operator": "Exists"})  # agents usually tolerate every taint
    if toleration_list:
        spec["tolerations"] = toleration_list
    return spec


KINDS = (
    "Pod",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "ReplicationController",
)
TEMPLATE_METADATA = (None, {}, {"labels": {"app": "agent"}}, {"annotations": None},
                     {"labels": {"app": "agent"}, "annotations": {"team": "infra"}})  # fmt: skip


def wrap(kind: str, spec: dict[str, Any], template_metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The spec inside an object of `kind`, where POD_TEMPLATE_PATHS says it lives."""
    metadata = {"name": "agent", "namespace": "ns"}
    if kind == "Pod":
        pod_metadata = dict(metadata) | copy.deepcopy(template_metadata or {})
        if pod_metadata.get("annotations") is None:
            pod_metadata.pop("annotations", None)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata, "spec": spec}
    template: dict[str, Any] = {"spec": spec}
    if template_metadata is not None:
        template["metadata"] = copy.deepcopy(template_metadata)
    obj: dict[str, Any] = {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata}
    node: dict[str, Any] = obj
    path = POD_TEMPLATE_PATHS[kind]
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = template
    return obj


def request_of(obj: Mapping[str, Any], *, operation: str = "CREATE", username: str = "alice",
               sub_resource: str = "") -> Request:  # fmt: skip
    return Request(
        uid="3b1e9c4e-0000-4000-8000-000000000001",
        operation=operation,
        kind=str(obj["kind"]),
        sub_resource=sub_resource,
        namespace="ns",
        name="agent",
        username=username,
        groups=frozenset({"system:authenticated"}),
        dry_run=False,
        object=obj,
    )


@dataclass(frozen=True)
class Scenario:
    nodes: list[Node]
    spec: dict[str, Any]
    obj: dict[str, Any]
    config: Config
    namespace_labels: dict[str, str]

    @property
    def request(self) -> Request:
        return request_of(self.obj)

    @cached_property
    def inventory(self) -> Inventory:
        return Inventory.build(self.nodes, self.config)

    def judge(self, endpoint: Endpoint, obj: Mapping[str, Any] | None = None) -> Verdict:
        request = self.request if obj is None else request_of(obj)
        return answer(request, endpoint=endpoint, config=self.config, inventory=self.inventory,
                      namespace_labels=self.namespace_labels)  # fmt: skip

    def decide(self) -> Decision:
        return decide(self.request, config=self.config, inventory=self.inventory,
                      namespace_labels=self.namespace_labels)  # fmt: skip


@st.composite
def configs(
    draw: st.DrawFn, nodes: Sequence[Node], modes: Sequence[Mode] = tuple(Mode), steering: bool = False
) -> Config:
    strategy = draw(st.sampled_from((SteeringStrategy.AFFINITY,) * 3 + (SteeringStrategy.NODE_SELECTOR,)))
    selector: dict[str, str] = {}
    if strategy is SteeringStrategy.NODE_SELECTOR:
        selector = draw(st.sampled_from(({AKS_OS_SKU: "Ubuntu"}, {AGENTPOOL: draw(st.sampled_from(values_of(AGENTPOOL, nodes)))})))  # fmt: skip
    rules = draw(st.sampled_from(((), (HostPathRule("/var/log", read_only=True),), (HostPathRule("/proc"),))))
    return Config(
        mode=draw(st.sampled_from(modes)),
        allowed_host_paths=rules,
        steering=Steering(
            enabled=steering or draw(st.integers(0, 9)) > 0, strategy=strategy, node_selector=selector
        ),
    )


@st.composite
def scenarios(draw: st.DrawFn, modes: Sequence[Mode] = tuple(Mode),
              namespace_labels: bool = False, steerable: bool = False) -> Scenario:  # fmt: skip
    """A request and its world; `steerable` biases it towards steering (both classes, host access)."""
    nodes = draw(node_lists(both_classes=steerable))
    spec = draw(pod_specs(nodes, host_bound=steerable))
    obj = wrap(draw(st.sampled_from(KINDS)), spec, draw(st.sampled_from(TEMPLATE_METADATA)))
    config = draw(configs(nodes, modes, steering=steerable))
    labels = {}
    if namespace_labels and draw(st.booleans()):
        labels[NAMESPACE_MODE_LABEL] = draw(st.sampled_from([*(m.value for m in Mode), "strict"]))
    return Scenario(nodes, spec, obj, config, labels)


# ---------------------------------------------------------------------------------------------------------
# The per-node reference: Kubernetes scheduling semantics, written from k8s.io/apimachinery labels
# (NewRequirement, Requirement.Matches), k8s.io/component-helpers nodeaffinity and corev1 ToleratesTaint.

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_GO_INT = re.compile(r"[+-]?[0-9]+")


def go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64): ASCII digits and a sign only, 64-bit range."""
    if not _GO_INT.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def requirement_parses(req: Mapping[str, Any]) -> bool:
    """labels.NewRequirement: a term with a requirement that fails here matches no node."""
    operator, values = req["operator"], req.get("values") or []
    if operator in ("In", "NotIn") and not values:
        return False
    if operator in ("Exists", "DoesNotExist") and values:
        return False
    if operator in ("Gt", "Lt") and (len(values) != 1 or go_parse_int(values[0]) is None):
        return False
    return all(len(v) <= 63 and _LABEL_VALUE.fullmatch(v) for v in values)


def requirement_holds(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator, values = req["key"], req["operator"], req.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if key not in labels:
        return False
    have, bound = go_parse_int(labels[key]), go_parse_int(values[0])
    if have is None or bound is None:
        return False
    return have > bound if operator == "Gt" else have < bound


def term_holds(term: Mapping[str, Any], node: Node) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # nil or empty term selects no objects
    if not all(requirement_parses(r) for r in expressions):
        return False
    if any(len(f.get("values") or []) != 1 or f["operator"] not in ("In", "NotIn") for f in fields):
        return False
    if not all(requirement_holds(r, node.labels) for r in expressions):
        return False
    return all((node.name == f["values"][0]) == (f["operator"] == "In") for f in fields)


def tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    effect, key = toleration.get("effect") or "", toleration.get("key") or ""
    if effect and effect != taint.effect:
        return False
    if key and key != taint.key:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Equal":
        return (toleration.get("value") or "") == taint.value
    return operator == "Exists"


def k8s_fits(spec: Mapping[str, Any], node: Node) -> bool:
    """Whether the scheduler (or, with nodeName, the kubelet) lets a pod with `spec` run on `node`."""
    node_name = spec.get("nodeName") or ""
    if node_name and node_name != node.name:
        return False
    # nodeName skips the scheduler: NoSchedule is not checked, the kubelet still refuses NoExecute.
    blocking = ("NoExecute",) if node_name else ("NoSchedule", "NoExecute")
    for taint in node.taints:
        if taint.key in TRANSIENT_TAINTS or taint.effect not in blocking:
            continue  # condition taints describe the node's state, not its pool (inventory.py)
        if not any(tolerates(t, taint) for t in spec.get("tolerations") or []):
            return False
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node.labels.get(key) != value:
            return False
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(term_holds(t, node) for t in required.get("nodeSelectorTerms") or [])


def reference_pools(spec: Mapping[str, Any], nodes: Sequence[Node], inventory: Inventory) -> set[str]:
    return {inventory.pools[inventory.pool_of_node[n.name]].name for n in nodes if k8s_fits(spec, n)}


def placed_pools(obj: Mapping[str, Any], inventory: Inventory) -> set[str]:
    return {p.name for p in place(Constraints.of(pod_spec_view(obj)), inventory).pools}


def pools_of(names: set[str], inventory: Inventory, node_class: NodeClass) -> set[str]:
    return {p.name for p in inventory.pools if p.name in names and p.node_class is node_class}


def describe(s: Scenario) -> str:
    nodes = [{"name": n.name, "labels": dict(n.labels), "taints": [t.__dict__ for t in n.taints],
              "osImage": n.os_image} for n in s.nodes]  # fmt: skip
    return json.dumps({"spec": s.spec, "nodes": nodes, "config": repr(s.config)}, indent=1, default=str)


# ---------------------------------------------------------------------------------------------------------
# Properties.

# Example counts keep the whole file near 10 s; each steering property sees some 20-30 steered objects.
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JUDGING = (Mode.ENFORCE, Mode.WARN, Mode.AUDIT)


def wire_patch(verdict: Verdict) -> list[dict[str, Any]]:
    """The patch as the apiserver receives it: base64 JSON in the /mutate response."""
    response = respond("uid", verdict)["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def steered(s: Scenario) -> Verdict:
    """The /mutate verdict of a scenario that steers; hypothesis discards the others (they are counted)."""
    verdict = s.judge(Endpoint.MUTATE)
    event(f"mutate: {verdict.outcome.value}")
    assume(bool(verdict.patch))
    note(describe(s))
    return verdict


def breaking(verdict: Verdict) -> set[str]:
    assert verdict.assessment is not None
    return {p.name for p in verdict.assessment.breaks}


@FAST
@given(scenarios(modes=(Mode.ENFORCE,), steerable=True))
def test_steering_twice_is_steering_once(s: Scenario) -> None:
    verdict = steered(s)
    again = s.judge(Endpoint.MUTATE, apply_patch(s.obj, verdict.patch))
    assert again.patch == (), f"second pass patched again ({again.outcome}): {again.patch}"
    assert again.outcome is Outcome.UNCHANGED


@FAST
@given(scenarios(modes=(Mode.ENFORCE,), steerable=True))
def test_patch_applies_with_jsonpatch_as_with_ours(s: Scenario) -> None:
    verdict = steered(s)
    before = copy.deepcopy(s.obj)
    ops = wire_patch(verdict)
    assert ops == json.loads(json.dumps(list(verdict.patch)))
    theirs = jsonpatch.apply_patch(s.obj, ops)
    ours = apply_patch(s.obj, verdict.patch)
    assert theirs == ours
    assert s.obj == before, "applying the patch changed the reviewed object"
    # Still a well-formed workload of its kind, and the steering is recorded on its pods.
    assert STEERED_ANNOTATION in pod_spec_view(ours).annotations


@FAST
@given(scenarios(modes=(Mode.ENFORCE,), steerable=True))
def test_steering_excludes_exactly_the_pools_it_breaks_on(s: Scenario) -> None:
    verdict = steered(s)
    before = placed_pools(s.obj, s.inventory)
    # A spec no known node matches is judged against the nodes that could come (tests/test_decision.py).
    assume(before)
    after = placed_pools(apply_patch(s.obj, verdict.patch), s.inventory)
    broken = breaking(verdict)
    assert after, "steered to nowhere"
    assert broken and not after & broken, f"still lands on {sorted(after & broken)}"
    assert not pools_of(after, s.inventory, NodeClass.IMMUTABLE) & broken
    assert after <= before, f"steering widened placement by {sorted(after - before)}"
    if s.config.steering.strategy is SteeringStrategy.AFFINITY:
        # Exclusions remove only pools it breaks on: every other pool reachable before stays reachable.
        assert before - broken <= after, f"steering also excluded {sorted(before - broken - after)}"


@FAST
@given(scenarios(modes=(Mode.ENFORCE,), steerable=True))
def test_steered_object_is_admitted(s: Scenario) -> None:
    verdict = steered(s)
    decision = s.decide()
    assert decision.mutated.steered
    assert decision.allowed, decision.validated.message
    validated = s.judge(Endpoint.VALIDATE, apply_patch(s.obj, verdict.patch))
    assert validated.allowed and validated.outcome in (Outcome.WORKS, Outcome.DEGRADED)
    assert respond("uid", validated)["response"]["allowed"]


@FAST
@given(scenarios(modes=(Mode.WARN, Mode.AUDIT, Mode.OFF), namespace_labels=True, steerable=True))
def test_only_enforce_ever_changes_an_object(s: Scenario) -> None:
    label = s.namespace_labels.get(NAMESPACE_MODE_LABEL)
    assume(label is None or label in ("warn", "audit", "off"))
    verdict = s.judge(Endpoint.MUTATE)
    event(f"mutate in {label or s.config.mode.value}: {verdict.outcome.value}")
    assert verdict.patch == () and "patch" not in respond("uid", verdict)["response"]
    assert s.decide().mutated.patch == ()


@FAST
@given(scenarios(modes=JUDGING), st.sampled_from(HOST_PATHS))
def test_a_read_only_mount_never_breaks_anything(s: Scenario, path: str) -> None:
    spec = copy.deepcopy(s.spec)
    for container in (*spec["containers"], *spec.get("initContainers", [])):
        for mount in container.get("volumeMounts", []):
            mount["readOnly"] = True
    spec.setdefault("volumes", []).append({"name": "ro", "hostPath": {"path": path}})
    spec["containers"][0].setdefault("volumeMounts", []).append(
        {"name": "ro", "mountPath": "/ro", "readOnly": True}
    )
    for flag in ("hostPID", "hostIPC", "hostNetwork"):
        spec.pop(flag, None)
    obj = wrap(str(s.obj["kind"]), spec, None)
    verdict = s.judge(Endpoint.VALIDATE, obj)
    assert verdict.assessment is not None and not verdict.assessment.breaks
    assert verdict.allowed and verdict.patch == ()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_placement_over_pools_equals_per_node_reference(data: st.DataObject) -> None:
    nodes = data.draw(node_lists(), label="nodes")
    spec = data.draw(pod_specs(nodes, host_bound=data.draw(st.booleans())), label="spec")
    inventory = Inventory.build(nodes, Config())
    expected = reference_pools(spec, nodes, inventory)
    event("lands nowhere" if not expected else f"lands on {min(len(expected), 3)}+ pools")
    assert placed_pools(wrap("Pod", spec, None), inventory) == expected


def effective_mode(config: Config, namespace_labels: Mapping[str, str]) -> Mode:
    """Written here from DESIGN.md, not taken from the code: the label wins, an invalid one enforces."""
    label = namespace_labels.get(NAMESPACE_MODE_LABEL)
    if label is None:
        return config.mode
    return Mode(label) if label in {m.value for m in Mode} else Mode.ENFORCE


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenarios(namespace_labels=True),
    st.sampled_from(tuple(Endpoint)),
    st.sampled_from(("CREATE", "CREATE", "UPDATE", "DELETE")),
    st.sampled_from(("", "", "", "ephemeralcontainers", "status")),
    st.sampled_from(("alice", "break-glass")),
    st.dictionaries(
        st.sampled_from(CHECK_IDS), st.builds(CheckSettings, st.booleans(), st.sampled_from(Severity))
    ),
    st.integers(0, 4),
)
def test_warnings_only_when_allowed_and_deny_only_in_enforce(
    s: Scenario, endpoint: Endpoint, operation: str, sub_resource: str, username: str,
    checks: dict[str, CheckSettings], trusted: int,
) -> None:  # fmt: skip
    config = replace(
        s.config,
        checks={**s.config.checks, **checks},
        exemptions=Exemptions(usernames=frozenset({"break-glass"})),
    )
    if operation == "DELETE":
        request = replace(request_of(s.obj, operation=operation), object=None)
    else:
        request = request_of(s.obj, operation=operation, username=username, sub_resource=sub_resource)
    # One in five: no trustworthy inventory, so placement follows node label evidence alone.
    inventory = Inventory.build(s.nodes, config) if trusted else None
    context: dict[str, Any] = {
        "config": config,
        "inventory": inventory,
        "namespace_labels": s.namespace_labels,
    }
    verdict = answer(request, endpoint=endpoint, **context)
    response = respond(request.uid, verdict)["response"]
    event(f"{endpoint.value}: {verdict.outcome.value}")
    assert response["uid"] == request.uid
    assert response["allowed"] is verdict.allowed
    if not response["allowed"]:
        assert "warnings" not in response
        assert "patch" not in response
        assert endpoint is Endpoint.VALIDATE
        assert effective_mode(config, s.namespace_labels) is Mode.ENFORCE
        assert any(config.check_settings(f.check).severity is Severity.ERROR for f in verdict.findings)
        assert verdict.assessment is not None and verdict.assessment.breaks
    if response.get("patch"):
        assert endpoint is Endpoint.MUTATE and effective_mode(config, s.namespace_labels) is Mode.ENFORCE
        assert verdict.assessment is not None
        assert all(p.effect is not Effect.BREAKS for p in verdict.assessment.pools) is False
    decision = decide(request, **context)
    if not decision.allowed:
        assert decision.warnings == ()
        assert effective_mode(config, s.namespace_labels) is Mode.ENFORCE


# ---------------------------------------------------------------------------------------------------------
# Disagreements the properties above found in 5ff4cb7 (fixed in b7e1477), pinned as minimal examples.


def _node(name: str, labels: dict[str, str], node_taints: tuple[Taint, ...] = ()) -> Node:
    return Node(name, {HOSTNAME_LABEL: name, **labels}, node_taints)


def _pod_with_terms(*term_list: dict[str, Any]) -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "busybox"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": list(term_list)}}}}  # fmt: skip


INTEGER_CASES = [
    # (node label value, requirement operator, requirement value)
    ("1_0", "Gt", "5"),  # Go's ParseInt refuses "1_0"; Python's int() reads 10
    ("99999999999999999999", "Gt", "5"),  # beyond int64: ParseInt fails; Python compares big integers
    ("5", "Gt", "-1"),  # "-1" is no valid label value: labels.NewRequirement fails, the term never matches
    ("5", "Lt", "+9"),  # "+9" is no valid label value either
]


@pytest.mark.parametrize(
    ("label", "operator", "value"), INTEGER_CASES, ids=[f"{c[0]} {c[1]} {c[2]}" for c in INTEGER_CASES]
)
def test_gt_lt_follow_go_parse_int(label: str, operator: str, value: str) -> None:
    """5ff4cb7 read these with Python's int() and placed the pod on n1; Kubernetes places it nowhere."""
    nodes = [_node("n1", {GENERATION: label})]
    spec = _pod_with_terms(
        {"matchExpressions": [{"key": GENERATION, "operator": operator, "values": [value]}]}
    )
    assert placed_pools(wrap("Pod", spec, None), Inventory.build(nodes, Config())) == set()


@pytest.mark.parametrize(
    ("label", "operator", "value"), INTEGER_CASES, ids=[f"{c[0]} {c[1]} {c[2]}" for c in INTEGER_CASES]
)
def test_reference_reads_integers_like_kubernetes(label: str, operator: str, value: str) -> None:
    """The reference fits these nowhere, while the same comparisons on plain integers hold."""
    node = _node("n1", {GENERATION: label})
    spec = _pod_with_terms(
        {"matchExpressions": [{"key": GENERATION, "operator": operator, "values": [value]}]}
    )
    assert not k8s_fits(spec, node)
    assert k8s_fits(_pod_with_terms({"matchExpressions": [{"key": GENERATION, "operator": "Gt", "values": ["5"]}]}),
                    _node("n2", {GENERATION: "10"}))  # fmt: skip


def test_steering_keeps_an_empty_term_empty() -> None:
    """5ff4cb7 gave an empty term (which matches no node) the exclusions, so it matched every general
    pool: steering widened the placement to azl."""
    nodes = [
        _node("ubuntu-0", {AGENTPOOL: "ubuntu", AKS_OS_SKU: "Ubuntu"}),
        _node("azl-0", {AGENTPOOL: "azl", AKS_OS_SKU: "AzureLinux"}),
        _node("flatcar-0", {AGENTPOOL: "flatcar", AKS_OS_SKU: "Flatcar"}),
    ]
    spec = _pod_with_terms({}, {"matchExpressions": [{"key": AKS_OS_SKU, "operator": "In",
                                                      "values": ["Ubuntu", "Flatcar"]}]})  # fmt: skip
    spec["volumes"] = [{"name": "tools", "hostPath": {"path": "/usr/local/bin"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "tools", "mountPath": "/tools"}]
    obj = wrap("Pod", spec, None)
    inventory = Inventory.build(nodes, Config())
    verdict = answer(request_of(obj), endpoint=Endpoint.MUTATE, config=Config(), inventory=inventory,
                     namespace_labels={})  # fmt: skip
    assert verdict.steered
    assert placed_pools(obj, inventory) == {"ubuntu", "flatcar"}
    assert placed_pools(apply_patch(obj, verdict.patch), inventory) == {"ubuntu"}
