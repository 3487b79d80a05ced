"""Placement by label evidence alone, for when no trustworthy node inventory exists (empty or stale).

Open world: each exact label of each enabled profile, and each profile's name as the marker label
(`immutable-os.io/profile=<name>`), becomes one imagined pool carrying just that label; each selector
made of In/Exists requirements one more; and one imagined general pool carries any label except
immutable evidence. A requirement on a key an imagined pool says nothing about is assumed satisfiable,
so the answer errs toward "could land there". osImage-only profiles are invisible here; the docs say so.
`evidence_exclusions` negates the evidence of the imagined pools a pod breaks on, for steering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

from webhook.core.config import Config, SelectorRequirement
from webhook.core.placement.analysis import Constraints, Placement
from webhook.core.placement.inventory import Classification, NodeClass, Pool
from webhook.core.placement.selectors import Term, requirement_matches
from webhook.core.profiles import PROFILE_LABEL

# A label value no pod can ask for with In (not a valid label value): "the marker, with some value".
_ANY_VALUE = "<any>"
_NEGATION = {"In": "NotIn", "Exists": "DoesNotExist"}


@dataclass(frozen=True)
class _Imagined:
    pool: Pool
    evidence: tuple[SelectorRequirement, ...]  # what marks its nodes (In/Exists), negated to exclude it


def _immutable_values(config: Config) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {PROFILE_LABEL: set()}
    for profile in config.enabled_profiles:
        values[PROFILE_LABEL].add(profile.name)
        for key, vals in profile.labels.items():
            values.setdefault(key, set()).update(vals)
    return values


def _pool(name: str, classification: Classification, labels: Mapping[str, str]) -> Pool:
    return Pool(name, classification, labels, (), (), {}, frozenset())


def _imagined_pools(config: Config) -> list[_Imagined]:
    pools = []
    for profile in config.enabled_profiles:
        evidence = [(PROFILE_LABEL, profile.name)]
        evidence += [(key, value) for key, values in profile.labels.items() for value in values]
        for key, value in evidence:
            why = Classification(
                NodeClass.IMMUTABLE, profile.display_name, f"label {key}={value}", profile.name
            )
            pool = _pool(f"unknown {profile.display_name} nodes ({key}={value})", why, {key: value})
            pools.append(_Imagined(pool, (SelectorRequirement(key, "In", (value,)),)))
    for selector in config.immutable_node_selectors:
        if not all(r.operator in _NEGATION and len(r.values) <= 1 for r in selector.requirements):
            continue
        labels = {r.key: (r.values[0] if r.values else _ANY_VALUE) for r in selector.requirements}
        known = config.profile(selector.profile)
        display = known.display_name if known else selector.name
        why = Classification(NodeClass.IMMUTABLE, display, f"selector {selector.name}", selector.profile)
        pools.append(_Imagined(_pool(f"unknown {selector.name} nodes", why, labels), selector.requirements))
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
    if req.key not in labels:
        return True
    if labels[req.key] == _ANY_VALUE:
        return req.operator in ("Exists", "NotIn") or (req.operator == "In" and bool(req.values))
    return requirement_matches(req, labels)


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

    pools = [
        i.pool
        for i in _imagined_pools(config)
        if reachable(partial(_imagined_satisfies, labels=i.pool.labels))
    ]
    if reachable(partial(_general_satisfies, immutable=immutable)):
        pools.append(_pool("unknown general-purpose nodes", Classification(NodeClass.GENERAL), {}))
    return Placement(tuple(pools))


def evidence_exclusions(breaking: Iterable[Pool], config: Config) -> tuple[SelectorRequirement, ...]:
    """Requirements that exclude these imagined pools: their evidence negated, where one requirement
    does it (a selector of several requirements cannot be negated by ANDed ones)."""
    names = {p.name for p in breaking}
    not_in: dict[str, set[str]] = {}
    absent: set[str] = set()
    for imagined in _imagined_pools(config):
        if imagined.pool.name not in names or len(imagined.evidence) != 1:
            continue
        (req,) = imagined.evidence
        if req.operator == "Exists":
            absent.add(req.key)
        else:
            not_in.setdefault(req.key, set()).update(req.values)
    result = [SelectorRequirement(k, "NotIn", tuple(sorted(v))) for k, v in not_in.items() if k not in absent]
    result += [SelectorRequirement(k, "DoesNotExist") for k in absent]
    return tuple(sorted(result, key=lambda r: (r.key, r.operator, r.values)))
