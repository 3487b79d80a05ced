"""Where a pod spec can land: the pools whose nodes pass its nodeName, nodeSelector, required node
affinity and taint tolerations. Preferred affinity never rules a node out, so it is ignored here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from webhook.core.config import SelectorRequirement
from webhook.core.placement.inventory import HOSTNAME_LABEL, Inventory, NodeClass, Pool, PoolIndex
from webhook.core.placement.selectors import (
    BLOCKING_EFFECTS,
    Term,
    Toleration,
    parse_terms,
    parse_tolerations,
    requirement_matches,
    tolerated,
)
from webhook.core.workloads import PodSpecView
from webhook.errors import ManifestError

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
    pools: tuple[Pool, ...]  # scheduling groups; a node pool spanning zones has several
    mask: int = 0  # the same groups as bits of the inventory's pool index (0 when imagined)

    @property
    def named(self) -> tuple[Pool, ...]:
        """One group per node pool (name and classification), in order: what messages list."""
        seen: dict[tuple[object, ...], Pool] = {}
        for pool in self.pools:
            seen.setdefault(pool.key, pool)
        return tuple(seen.values())

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


def _pools_meeting(req: SelectorRequirement, index: PoolIndex) -> int:
    """Pools whose shared labels meet `req`, plus every pool where its key is per-node (checked later)."""
    values = index.by_value.get(req.key, {})
    if req.operator == "In":
        mask = 0
        for v in req.values:
            mask |= values.get(v, 0)
    elif req.operator == "NotIn":
        mask = index.all
        for v in req.values:
            mask &= ~values.get(v, 0)
    elif req.operator == "Exists":
        mask = index.by_key.get(req.key, 0)
    elif req.operator == "DoesNotExist":
        mask = index.all & ~index.by_key.get(req.key, 0)
    elif req.operator not in ("Gt", "Lt"):
        mask = index.all  # an operator we don't know excludes nothing (see requirement_matches)
    else:  # Gt, Lt: few distinct values per key
        mask = 0
        for value, pools in values.items():
            if requirement_matches(req, {req.key: value}):
                mask |= pools
    return mask | index.per_node.get(req.key, 0)


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class _Placer:
    """Answers each term for all pools at once with the pool index; only pools where a requirement
    touches a per-node label (or the term names nodes) are checked node by node."""

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

    def _named(self, requirements: Iterable[SelectorRequirement], term: Term | None) -> set[str] | None:
        """Nodes the term names outright (hostname or metadata.name `In`), or None if it names none."""
        named: set[str] | None = None
        for r in requirements:
            if r.key == HOSTNAME_LABEL and r.operator == "In":
                hits = {n for v in r.values for n in self.inventory.nodes_by_hostname.get(v, ())}
                named = hits if named is None else named & hits
        for r in term.fields if term else ():
            if r.operator == "In":
                named = set(r.values) if named is None else named & set(r.values)
        return named

    def term_pools(self, term: Term | None) -> int:
        index = self.inventory.index
        requirements = (*self.selector, *(term.expressions if term else ()))
        mask = index.all
        per_node = 0
        for r in requirements:
            mask &= _pools_meeting(r, index)
            per_node |= index.per_node.get(r.key, 0)
        named = self._named(requirements, term)
        if named is not None:
            return self._check_nodes(self._by_pool(named, mask).items(), term)
        if term is not None and term.fields:  # NotIn on metadata.name: node by node
            per_node = mask
        definite = mask & ~per_node
        pools = self.inventory.pools
        check = mask & per_node
        if not check:
            return definite
        per_node_reqs = [r for r in requirements if r.key in self.inventory.identity_keys]
        if any(r.operator in ("Gt", "Lt") for r in per_node_reqs):  # value order: every node decides
            return definite | self._check_nodes(((i, pools[i].members) for i in _bits(check)), term)
        by_value = self._named_by_value(per_node_reqs, term)
        by_pool = self._by_pool(by_value, check)
        candidates = (
            (i, self._representatives(pools[i], by_pool.get(i, []), by_value)) for i in _bits(check)
        )
        return definite | self._check_nodes(candidates, term)

    def _by_pool(self, nodes: Iterable[str], mask: int) -> dict[int, list[str]]:
        """`nodes` grouped by the index of their pool, for the pools in `mask`."""
        grouped: dict[int, list[str]] = {}
        for node in sorted(nodes):
            i = self.inventory.pool_of_node.get(node)
            if i is not None and mask >> i & 1:
                grouped.setdefault(i, []).append(node)
        return grouped

    def _named_by_value(self, per_node: Iterable[SelectorRequirement], term: Term | None) -> set[str]:
        """Every node a per-node requirement or a matchFields value names (hostname values via the index)."""
        named: set[str] = set()
        for r in per_node:
            for value in r.values:
                named.update(
                    self.inventory.nodes_by_hostname.get(value, ()) if r.key == HOSTNAME_LABEL else (value,)
                )
        for r in term.fields if term else ():
            named.update(r.values)
        return named

    @staticmethod
    def _representatives(pool: Pool, named_here: list[str], named: set[str]) -> list[str]:
        """The nodes that decide for the pool: those named by value, and one unnamed node of each variant
        (unnamed nodes carrying the same per-node keys answer every requirement alike)."""
        chosen = list(named_here)
        for variant in pool.variants:
            chosen.extend(next(([n] for n in variant if n not in named), []))
        return chosen

    def _check_nodes(self, candidates: Iterable[tuple[int, Iterable[str]]], term: Term | None) -> int:
        mask = 0
        for i, nodes in candidates:
            pool = self.inventory.pools[i]
            if any(self.node_passes(pool, n, term) for n in nodes):
                mask |= 1 << i
        return mask

    def pools(self) -> tuple[Pool, ...]:
        terms: tuple[Term | None, ...] = (None,) if self.c.terms is None else self.c.terms
        mask = 0
        for term in terms:
            if term is None or not term.empty:
                mask |= self.term_pools(term)
        pools = self.inventory.pools
        for i in _bits(mask & self.inventory.index.tainted):
            if not tolerated(pools[i].taints, self.c.tolerations, BLOCKING_EFFECTS):
                mask &= ~(1 << i)
        return tuple(pools[i] for i in _bits(mask))

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
    pools = placer.pinned(constraints.node_name) if constraints.node_name is not None else placer.pools()
    return Placement(pools, sum(1 << inventory.pool_of_node[p.members[0]] for p in pools))
