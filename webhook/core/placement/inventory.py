"""The node inventory: nodes classified immutable or general, grouped into pools once per change.

Nodes of one pool share every scheduling-relevant label and taint, so `Inventory.build` groups them by
that signature; placement then costs O(pools). Per-node labels (hostname, any label whose value is the
node's name) stay out of the signature and are resolved through a name index.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from webhook.core.config import JUDGEMENT_ENTRIES, Config, Memo
from webhook.core.placement.selectors import Taint, requirement_matches
from webhook.core.profiles import PROFILE_LABEL, Profile
from webhook.errors import NodeListError

HOSTNAME_LABEL = "kubernetes.io/hostname"
# Labels that name a node pool, in the order we trust them, for messages.
POOL_NAME_LABELS = (
    "kubernetes.azure.com/agentpool",
    "agentpool",
    "eks.amazonaws.com/nodegroup",
    "cloud.google.com/gke-nodepool",
    "karpenter.sh/nodepool",
    "node.kubernetes.io/pool",
)
# Taints that describe a node's passing condition, not its pool; a NotReady or cordoned node still
# belongs to a pool the pod can land on once it recovers.
TRANSIENT_TAINT_PREFIX = "node.kubernetes.io/"
TRANSIENT_TAINTS = frozenset(
    TRANSIENT_TAINT_PREFIX + t
    for t in (
        "not-ready",
        "unreachable",
        "unschedulable",
        "memory-pressure",
        "disk-pressure",
        "pid-pressure",
        "network-unavailable",
        "out-of-service",
    )
)


class NodeClass(enum.Enum):
    GENERAL = "general"
    IMMUTABLE = "immutable"


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...] = ()
    os_image: str = ""
    kernel_version: str = ""

    @classmethod
    def from_wire(cls, obj: Any, where: str = "node") -> Node:
        """A Node from its JSON/YAML form (`kubectl get node -o yaml`)."""
        if not isinstance(obj, Mapping):
            raise NodeListError("expected a Node object", field=where)
        metadata = obj.get("metadata") or {}
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not isinstance(name, str) or not name:
            raise NodeListError("a Node needs metadata.name", field=f"{where}.metadata.name")
        labels = metadata.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise NodeListError("labels must be a mapping", field=f"{where}.metadata.labels")
        spec = obj.get("spec") or {}
        raw_taints = spec.get("taints") or [] if isinstance(spec, Mapping) else []
        if not isinstance(raw_taints, list):
            raise NodeListError("taints must be a list", field=f"{where}.spec.taints")
        taints = []
        for i, t in enumerate(raw_taints):
            if not isinstance(t, Mapping) or not t.get("key") or not t.get("effect"):
                raise NodeListError("a taint needs key and effect", field=f"{where}.spec.taints[{i}]")
            taints.append(Taint(str(t["key"]), str(t.get("value") or ""), str(t["effect"])))
        status = obj.get("status") or {}
        info = status.get("nodeInfo") or {} if isinstance(status, Mapping) else {}
        if not isinstance(info, Mapping):
            info = {}
        return cls(
            name,
            {str(k): str(v) for k, v in labels.items()},
            tuple(taints),
            str(info.get("osImage") or ""),
            str(info.get("kernelVersion") or ""),
        )


@dataclass(frozen=True)
class Classification:
    node_class: NodeClass
    profile: str = ""  # display name of the immutable OS, empty for general nodes
    evidence: str = ""  # what on the Node object said so, for messages and `scan`
    profile_name: str = ""  # the profile whose host contract applies ("" for general nodes)


GENERAL = Classification(NodeClass.GENERAL)


def _profile_evidence(node: Node, profile: Profile) -> str:
    for key, values in profile.labels.items():
        if node.labels.get(key) in values:
            return f"label {key}={node.labels[key]}"
    for key, prefixes in profile.label_prefixes.items():
        value = node.labels.get(key, "")
        if any(value.startswith(p) for p in prefixes):
            return f"label {key}={value}"
    if any(node.os_image.startswith(p) for p in profile.os_image_prefixes):
        return f"osImage {node.os_image}"
    if any(node.kernel_version.endswith(s) for s in profile.kernel_suffixes):
        return f"kernelVersion {node.kernel_version}"
    return ""


def marker_value(node: Node, config: Config) -> str | None:
    """The `immutable-os.io/profile` value this node's own evidence calls for (its profile's name), or None.

    The marker label is not evidence here, so a node labelled by us that stops matching loses the label.
    """
    unmarked = (
        node
        if PROFILE_LABEL not in node.labels
        else replace(node, labels={k: v for k, v in node.labels.items() if k != PROFILE_LABEL})
    )
    for profile in config.enabled_profiles:
        if _profile_evidence(unmarked, profile):
            return profile.name
    return None


def classify(node: Node, config: Config) -> Classification:
    for profile in config.enabled_profiles:
        evidence = _profile_evidence(node, profile)
        if evidence:
            return Classification(NodeClass.IMMUTABLE, profile.display_name, evidence, profile.name)
    for selector in config.immutable_node_selectors:
        if all(requirement_matches(r, node.labels) for r in selector.requirements):
            # The documented marker label names its OS in its value; other selectors say it or not.
            marker = node.labels.get(PROFILE_LABEL) if selector.requirements[0].key == PROFILE_LABEL else None
            name = selector.profile or marker or ""
            known = config.profile(name)
            display = known.display_name if known else (marker or selector.name)
            return Classification(NodeClass.IMMUTABLE, display, f"selector {selector.name}", name)
    return GENERAL


@dataclass(frozen=True)
class Pool:
    """Nodes that are the same for scheduling: same class, same shared labels, same blocking taints."""

    name: str
    classification: Classification
    labels: Mapping[str, str]  # shared by every member
    taints: tuple[Taint, ...]
    members: tuple[str, ...]
    member_labels: Mapping[str, Mapping[str, str]]  # per-node labels (hostname and the like)
    identity_keys: frozenset[str]
    # Members grouped by which per-node label keys they carry: members no requirement names agree on
    # every per-node requirement within a group, so one of each group stands for the rest.
    variants: tuple[tuple[str, ...], ...] = ()

    @property
    def node_class(self) -> NodeClass:
        return self.classification.node_class

    def node_labels(self, node: str) -> Mapping[str, str]:
        own = self.member_labels.get(node)
        return {**self.labels, **own} if own else self.labels

    def describe(self) -> str:
        c = self.classification
        return f"pool {self.name} ({c.profile})" if c.profile else f"pool {self.name}"

    @property
    def key(self) -> tuple[str, Classification]:
        """What makes groups one node pool: its name and how its nodes are classified."""
        return (self.name, self.classification)


def _variants(members: Sequence[tuple[Node, frozenset[str]]]) -> tuple[tuple[str, ...], ...]:
    groups: dict[frozenset[str], list[str]] = {}
    for node, identity in members:
        groups.setdefault(identity, []).append(node.name)
    return tuple(tuple(sorted(names)) for _, names in sorted(groups.items(), key=lambda g: sorted(g[0])))


def _identity_keys(node: Node) -> frozenset[str]:
    return frozenset(k for k, v in node.labels.items() if k == HOSTNAME_LABEL or v == node.name)


def _pool_name(labels: Mapping[str, str], first_node: str) -> str:
    for key in POOL_NAME_LABELS:
        if labels.get(key):
            return labels[key]
    return f"like-{first_node}"


@dataclass(frozen=True)
class PoolIndex:
    """Pools as bit masks (bit i = pool i), so one requirement is answered for every pool at once."""

    all: int
    by_value: Mapping[str, Mapping[str, int]]  # shared label key -> value -> pools carrying it
    by_key: Mapping[str, int]  # shared label key -> pools carrying it, any value
    per_node: Mapping[str, int]  # label key -> pools where it is a per-node label
    tainted: int  # pools with taints that can block scheduling

    @classmethod
    def of(cls, pools: Sequence[Pool]) -> PoolIndex:
        by_value: dict[str, dict[str, int]] = {}
        by_key: dict[str, int] = {}
        per_node: dict[str, int] = {}
        tainted = 0
        for i, pool in enumerate(pools):
            bit = 1 << i
            for key, value in pool.labels.items():
                values = by_value.setdefault(key, {})
                values[value] = values.get(value, 0) | bit
                by_key[key] = by_key.get(key, 0) | bit
            for key in pool.identity_keys:
                per_node[key] = per_node.get(key, 0) | bit
            if pool.taints:
                tainted |= bit
        return cls((1 << len(pools)) - 1, by_value, by_key, per_node, tainted)


@dataclass(frozen=True)
class Inventory:
    pools: tuple[Pool, ...]
    pool_of_node: Mapping[str, int]
    nodes_by_hostname: Mapping[str, tuple[str, ...]]
    label_keys: frozenset[str] = frozenset()  # every label key some node carries
    identity_keys: frozenset[str] = frozenset()  # every per-node label key, over all pools
    index: PoolIndex = PoolIndex(0, {}, {}, {}, 0)
    # Node pool name -> its nodes. A pool spans zones (so several scheduling groups): counted whole.
    nodes_per_pool: Mapping[str, int] = field(default_factory=dict)
    # Answers that depend on this inventory and on no pod: placements by constraints, steering labels.
    memo: Memo = field(default_factory=lambda: Memo(), init=False, compare=False, repr=False)
    # The judgement of each workload's pods (assessment._judgement) apart: a DaemonSet's pods, one per
    # node, fill it and start it over without dropping the answers above, which cost far more to redo.
    judgements: Memo = field(
        default_factory=lambda: Memo(JUDGEMENT_ENTRIES), init=False, compare=False, repr=False
    )

    @property
    def node_count(self) -> int:
        return len(self.pool_of_node)

    @classmethod
    def build(cls, nodes: Iterable[Node], config: Config) -> Inventory:
        groups: dict[tuple[Any, ...], list[tuple[Node, frozenset[str]]]] = {}
        classes: dict[tuple[Any, ...], Classification] = {}
        for node in nodes:
            identity = _identity_keys(node)
            shared = frozenset((k, v) for k, v in node.labels.items() if k not in identity)
            taints = frozenset(t for t in node.taints if t.key not in TRANSIENT_TAINTS)
            classification = classify(node, config)
            signature = (shared, taints, classification)
            groups.setdefault(signature, []).append((node, identity))
            classes[signature] = classification
        pools: list[Pool] = []
        pool_of_node: dict[str, int] = {}
        by_hostname: dict[str, list[str]] = {}
        names_seen: dict[str, list[Classification]] = {}
        nodes_per_pool: dict[str, int] = {}
        for signature, members in sorted(groups.items(), key=lambda g: min(n.name for n, _ in g[1])):
            shared, taints, classification = signature
            first = min(n.name for n, _ in members)
            name = _pool_name(dict(shared), first)
            # One pool spans zones and so several groups, under one name; only a pool whose nodes are
            # classified differently (some relabelled, say) is shown as several.
            seen = names_seen.setdefault(name, [])
            if classification not in seen:
                seen.append(classification)
            if seen.index(classification):
                name = f"{name}#{seen.index(classification) + 1}"
            nodes_per_pool[name] = nodes_per_pool.get(name, 0) + len(members)
            for node, _ in members:
                pool_of_node[node.name] = len(pools)
                if HOSTNAME_LABEL in node.labels:
                    by_hostname.setdefault(node.labels[HOSTNAME_LABEL], []).append(node.name)
            pools.append(
                Pool(
                    name=name,
                    classification=classes[signature],
                    labels=dict(shared),
                    taints=tuple(sorted(taints, key=lambda t: (t.key, t.effect, t.value))),
                    members=tuple(sorted(n.name for n, _ in members)),
                    member_labels={n.name: {k: n.labels[k] for k in ident} for n, ident in members if ident},
                    identity_keys=frozenset().union(*(ident for _, ident in members)),
                    variants=_variants(members),
                )
            )
        identity_keys = frozenset().union(*(p.identity_keys for p in pools))
        label_keys = frozenset(k for p in pools for k in p.labels) | identity_keys
        by_hostname_tuples = {k: tuple(v) for k, v in by_hostname.items()}
        return cls(
            tuple(pools),
            pool_of_node,
            by_hostname_tuples,
            label_keys,
            identity_keys,
            PoolIndex.of(pools),
            nodes_per_pool,
        )
