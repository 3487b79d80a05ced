"""Where a pod spec can land: the pools whose nodes pass its nodeName, nodeSelector, required node
affinity and taint tolerations. Preferred affinity never rules a node out, so it is ignored here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from webhook.config import SelectorRequirement
from webhook.errors import ManifestError
from webhook.placement.inventory import HOSTNAME_LABEL, Inventory, NodeClass, Pool
from webhook.placement.selectors import (
    BLOCKING_EFFECTS,
    Term,
    Toleration,
    parse_terms,
    parse_tolerations,
    requirement_matches,
    tolerated,
)
from webhook.workloads import PodSpecView

REQUIRED_AFFINITY = ("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")


@dataclass(frozen=True)
class Constraints:
    """What a pod spec says about where it may run."""

    node_name: str | None
    node_selector: Mapping[str, str]
    terms: tuple[Term, ...] | None  # None: no required node affinity
    tolerations: tuple[Toleration, ...]

    @classmethod
    def of(cls, pod: PodSpecView) -> Constraints:
        selector = pod.mapping("nodeSelector") or {}
        for key, value in selector.items():
            if not isinstance(value, str):
                raise ManifestError(
                    "nodeSelector values must be strings", field=pod.field("nodeSelector", key)
                )
        required = pod.mapping(*REQUIRED_AFFINITY)
        terms = None
        if required is not None:
            terms = parse_terms(
                required.get("nodeSelectorTerms") or [], pod.field(*REQUIRED_AFFINITY, "nodeSelectorTerms")
            )
        return cls(
            pod.string("nodeName"),
            dict(selector),
            terms,
            parse_tolerations(pod.objects("tolerations"), pod.field("tolerations")),
        )


@dataclass(frozen=True)
class Placement:
    pools: tuple[Pool, ...]

    @property
    def classes(self) -> frozenset[NodeClass]:
        return frozenset(p.node_class for p in self.pools)

    def of_class(self, node_class: NodeClass) -> tuple[Pool, ...]:
        return tuple(p for p in self.pools if p.node_class is node_class)

    @property
    def nowhere(self) -> bool:
        return not self.pools

    @property
    def both(self) -> bool:
        return len(self.classes) == 2

    @property
    def only_immutable(self) -> bool:
        return self.classes == {NodeClass.IMMUTABLE}

    @property
    def class_names(self) -> list[str]:
        return sorted(c.value for c in self.classes)


def _per_node(requirements: Iterable[SelectorRequirement], pool: Pool) -> bool:
    return any(r.key in pool.identity_keys for r in requirements)


class _Placer:
    def __init__(self, inventory: Inventory, constraints: Constraints) -> None:
        self.inventory = inventory
        self.c = constraints
        self.selector = tuple(
            SelectorRequirement(k, "In", (v,)) for k, v in constraints.node_selector.items()
        )

    def node_passes(self, pool: Pool, node: str, term: Term | None) -> bool:
        labels = pool.node_labels(node)
        if not all(requirement_matches(r, labels) for r in self.selector):
            return False
        if term is not None:
            return term.matches(node, labels)
        return self.c.terms is None or any(t.matches(node, labels) for t in self.c.terms)

    def candidates(self, index: int, pool: Pool, term: Term | None) -> Iterable[str]:
        """The pool's nodes a per-node requirement could pick; an index lookup when it names them."""
        named: set[str] | None = None
        requirements = [*self.selector, *(term.expressions if term else ())]
        for r in requirements:
            if r.key == HOSTNAME_LABEL and r.operator == "In":
                hits = {n for v in r.values for n in self.inventory.nodes_by_hostname.get(v, ())}
                named = hits if named is None else named & hits
        for r in term.fields if term else ():
            if r.operator == "In":
                named = set(r.values) if named is None else named & set(r.values)
        if named is None:
            return pool.members  # rare: NotIn/Exists on a per-node label; scan this pool only
        return (n for n in named if self.inventory.pool_of_node.get(n) == index)

    def pool_admits(self, index: int, pool: Pool) -> bool:
        if not tolerated(pool.taints, self.c.tolerations, BLOCKING_EFFECTS):
            return False
        shared_selector = [r for r in self.selector if r.key not in pool.identity_keys]
        if not all(requirement_matches(r, pool.labels) for r in shared_selector):
            return False
        selector_per_node = len(shared_selector) != len(self.selector)
        terms: tuple[Term | None, ...] = (None,) if self.c.terms is None else self.c.terms
        for term in terms:
            if term is not None:
                if term.empty:
                    continue
                shared = [r for r in term.expressions if r.key not in pool.identity_keys]
                if not all(requirement_matches(r, pool.labels) for r in shared):
                    continue
                if not selector_per_node and not term.fields and len(shared) == len(term.expressions):
                    return True
            elif not selector_per_node:
                return True
            if any(self.node_passes(pool, n, term) for n in self.candidates(index, pool, term)):
                return True
        return False

    def pinned(self, node: str) -> tuple[Pool, ...]:
        # nodeName bypasses the scheduler: NoSchedule taints do not apply, NoExecute ones evict.
        index = self.inventory.pool_of_node.get(node)
        if index is None:
            return ()
        pool = self.inventory.pools[index]
        if not tolerated(pool.taints, self.c.tolerations, ("NoExecute",)):
            return ()
        return (pool,) if self.node_passes(pool, node, None) else ()


def place(constraints: Constraints, inventory: Inventory) -> Placement:
    placer = _Placer(inventory, constraints)
    if constraints.node_name is not None:
        return Placement(placer.pinned(constraints.node_name))
    return Placement(tuple(p for i, p in enumerate(inventory.pools) if placer.pool_admits(i, p)))
