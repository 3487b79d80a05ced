"""What keeps a pod spec off exactly the pools it breaks on: node-selector requirements chosen from the
labels those nodes really carry, never one a node it may keep landing on carries too.

With a live inventory (`exclude_pools`), keys are tried in order of how well they hold: the marker label
(`immutable-os.io/profile`, stable for pools added later), the AKS SKU labels (`os-sku-requested`,
`os-sku`, `os-sku-effective`: on AKS one of them may hold only the family, `AzureLinux`, shared with
general pools), other profile and selector evidence keys, then the pool's own name (`agentpool`). A value
is used only if every group of nodes carrying it is one the pod breaks on. (Without an inventory,
evidence.py negates the evidence of its imagined pools.) The caller places the steered spec again:
that, not this module, is the proof.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.core.config import Config, SelectorRequirement
from webhook.core.placement.inventory import POOL_NAME_LABELS, Inventory, NodeClass, Pool
from webhook.core.profiles import AKS_OS_SKU, AKS_OS_SKU_EFFECTIVE, AKS_OS_SKU_REQUESTED, PROFILE_LABEL


def candidate_keys(config: Config) -> tuple[tuple[str, frozenset[str] | None], ...]:
    """The label keys steering may use, in order of preference, each with the values it may use (None:
    any). A key that is profile evidence may only use evidence values: `os-sku: AzureLinux` is a family
    name that general pools carry too, so even where no general pool carries it today, a general Azure
    Linux pool added tomorrow would silently lose every workload steered with it."""
    evidence: dict[str, set[str]] = {}
    for profile in config.enabled_profiles:
        for key, values in profile.labels.items():
            evidence.setdefault(key, set()).update(values)
    for selector in config.immutable_node_selectors:
        for r in selector.requirements:
            if r.operator == "In":
                evidence.setdefault(r.key, set()).update(r.values)
            elif r.operator == "Exists":
                evidence[r.key] = set()  # marked by the key alone: any value marks
    keys = [
        PROFILE_LABEL,
        AKS_OS_SKU_REQUESTED,
        AKS_OS_SKU,
        AKS_OS_SKU_EFFECTIVE,
        *evidence,
        *POOL_NAME_LABELS,
    ]
    allowed = {k: frozenset(v) if v else None for k, v in evidence.items()}
    allowed[PROFILE_LABEL] = None  # the marker's value names the OS: any value is a marker
    for key in POOL_NAME_LABELS:
        allowed.setdefault(key, None)
    return tuple((k, allowed.get(k)) for k in dict.fromkeys(keys) if k in allowed)


def exclude_pools(
    inventory: Inventory, breaking: int, targets: int, config: Config
) -> tuple[tuple[SelectorRequirement, ...], int]:
    """Requirements that, ANDed, exclude the groups in `targets` (a bit mask over `inventory.pools`)
    while excluding nothing outside `breaking`; and the mask of targets nothing could exclude."""
    remaining = targets
    chosen: dict[str, list[str]] = {}
    for key, values in candidate_keys(config):
        if not remaining:
            break
        if key in inventory.identity_keys:
            continue  # a per-node label: its value differs node by node
        for value, groups in sorted(inventory.index.by_value.get(key, {}).items()):
            usable = values is None or value in values
            if usable and groups & remaining and not groups & ~breaking:
                chosen.setdefault(key, []).append(value)
                remaining &= ~groups
    requirements = tuple(SelectorRequirement(k, "NotIn", tuple(sorted(v))) for k, v in chosen.items())
    return requirements, remaining


def names(pools: Sequence[Pool]) -> str:
    return ", ".join(dict.fromkeys(p.describe() for p in pools))


GENERAL_SELECTOR_KEYS = (AKS_OS_SKU, AKS_OS_SKU_REQUESTED, *POOL_NAME_LABELS)


def general_selector(inventory: Inventory) -> tuple[str, str] | None:
    """A `key: value` node selector that picks general-purpose nodes only (the most of them), to suggest
    in messages; never a value an immutable node also carries (on AKS `os-sku: AzureLinux` may be one)."""
    immutable = 0
    for i, pool in enumerate(inventory.pools):
        if pool.node_class is NodeClass.IMMUTABLE:
            immutable |= 1 << i
    best: tuple[int, str, str] | None = None
    for key in GENERAL_SELECTOR_KEYS:
        if key in inventory.identity_keys:
            continue
        for value, groups in sorted(inventory.index.by_value.get(key, {}).items()):
            if groups & immutable:
                continue
            nodes = sum(
                len(inventory.pools[i].members) for i in range(len(inventory.pools)) if groups >> i & 1
            )
            if best is None or nodes > best[0]:
                best = (nodes, key, value)
    return (best[1], best[2]) if best else None
