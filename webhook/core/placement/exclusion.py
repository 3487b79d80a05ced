"""What excludes immutable nodes in a node selector: the negation of the label evidence.

Computed once per inventory (`Inventory.build`), used by steering and by the evidence-only placement.
"""

from __future__ import annotations

from webhook.core.config import Config, SelectorRequirement

_NEGATION = {"In": "NotIn", "NotIn": "In", "Exists": "DoesNotExist", "DoesNotExist": "Exists"}


def exclusions(config: Config, label_keys: frozenset[str] | None = None) -> tuple[SelectorRequirement, ...]:
    """Node-selector requirements that, ANDed, exclude every node the label evidence marks immutable.

    With `label_keys` (every label key some node carries), keys no node has are left out: a GKE label
    has no business in an AKS pod's affinity.

    osImage and label-prefix evidence cannot be written as a requirement, nor can a multi-requirement
    selector be negated by one; pools known only that way stay reachable, which the caller detects.
    """
    not_in: dict[str, set[str]] = {}
    others: set[SelectorRequirement] = set()
    for profile in config.enabled_profiles:
        for key, values in profile.labels.items():
            not_in.setdefault(key, set()).update(values)
    for selector in config.immutable_node_selectors:
        if len(selector.requirements) != 1 or selector.requirements[0].operator not in _NEGATION:
            continue
        req = selector.requirements[0]
        negated = _NEGATION[req.operator]
        if negated == "NotIn":
            not_in.setdefault(req.key, set()).update(req.values)
        else:
            others.add(SelectorRequirement(req.key, negated, req.values))
    absent = {r.key for r in others if r.operator == "DoesNotExist"}
    result = [SelectorRequirement(k, "NotIn", tuple(sorted(v))) for k, v in not_in.items() if k not in absent]
    result += others
    if label_keys is not None:
        result = [r for r in result if r.key in label_keys]
    return tuple(sorted(result, key=lambda r: (r.key, r.operator, r.values)))
