"""Placement by label evidence alone, for when no trustworthy node inventory exists (empty or stale).

Open world: each immutable profile's label evidence becomes one imagined pool carrying just that label,
plus one imagined general pool that carries any label except immutable evidence. A requirement on a key
an imagined pool says nothing about is assumed satisfiable, so the answer errs toward "could land there".
osImage-only profiles are invisible here; the docs say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from webhook.core.config import PROFILE_LABEL, Config, SelectorRequirement
from webhook.core.placement.analysis import Constraints, Placement
from webhook.core.placement.inventory import Classification, NodeClass, Pool
from webhook.core.placement.selectors import Term, requirement_matches


def _immutable_values(config: Config) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {}
    for profile in config.enabled_profiles:
        for key, vals in profile.labels.items():
            values.setdefault(key, set()).update(vals)
    return values


def _imagined(name: str, classification: Classification, labels: Mapping[str, str]) -> Pool:
    return Pool(name, classification, labels, (), (), {}, frozenset())


def _imagined_pools(config: Config) -> list[Pool]:
    pools = []
    for profile in config.enabled_profiles:
        for key, values in profile.labels.items():
            for value in values:
                evidence = Classification(NodeClass.IMMUTABLE, profile.display_name, f"label {key}={value}")
                pools.append(_imagined(f"unknown {profile.display_name} nodes", evidence, {key: value}))
    for selector in config.immutable_node_selectors:
        labels = {
            r.key: (r.values[0] if r.values else "true")
            for r in selector.requirements
            if r.operator in ("In", "Exists")
        }
        if len(labels) == len(selector.requirements):
            classification = Classification(NodeClass.IMMUTABLE, selector.name, f"selector {selector.name}")
            pools.append(
                Pool(f"unknown {selector.name} nodes", classification, labels, (), (), {}, frozenset())
            )
    return pools


def _general_satisfies(req: SelectorRequirement, immutable: Mapping[str, set[str]]) -> bool:
    """Could some general-purpose node meet `req`? Any label is possible except immutable evidence."""
    if req.key == PROFILE_LABEL:
        return req.operator in ("NotIn", "DoesNotExist")
    if req.operator == "In" and req.key in immutable:
        return any(v not in immutable[req.key] for v in req.values)
    return True


def _imagined_satisfies(req: SelectorRequirement, labels: Mapping[str, str]) -> bool:
    # Only the evidence label is known; any other requirement could be met by some node of that OS.
    return requirement_matches(req, labels) if req.key in labels else True


def place_by_evidence(constraints: Constraints, config: Config) -> Placement:
    """Where the spec could land in an unknown cluster, judged by its own constraints and the evidence."""
    immutable = _immutable_values(config)
    selector = [SelectorRequirement(k, "In", (v,)) for k, v in constraints.node_selector.items()]
    terms: tuple[Term | None, ...] = (None,) if constraints.terms is None else constraints.terms

    def reachable(satisfies: Callable[[SelectorRequirement], bool]) -> bool:
        for term in terms:
            if term is not None and term.empty:
                continue
            if all(satisfies(r) for r in [*selector, *(term.expressions if term else ())]):
                return True
        return False

    pools = [p for p in _imagined_pools(config) if reachable(partial(_imagined_satisfies, labels=p.labels))]
    if reachable(partial(_general_satisfies, immutable=immutable)):
        pools.append(
            Pool(
                "unknown general-purpose nodes",
                Classification(NodeClass.GENERAL),
                {},
                (),
                (),
                {},
                frozenset(),
            )
        )
    return Placement(tuple(pools))
