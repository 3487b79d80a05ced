"""Which labels steering writes, in each way AKS may label Azure Container Linux and OS Guard nodes: never
a value a node it keeps landing on carries, never a family value, the most stable label first."""

from __future__ import annotations

import pytest

from tests.builders import aks_inventory, aks_pool
from webhook.core.config import Config, SelectorRequirement
from webhook.core.placement import Inventory, Node
from webhook.core.placement.exclusion import exclude_pools, general_selector

REQUESTED = "kubernetes.azure.com/os-sku-requested"
OS_SKU = "kubernetes.azure.com/os-sku"
AGENTPOOL = "kubernetes.azure.com/agentpool"


def immutable_mask(inventory: Inventory, *names: str) -> int:
    return sum(1 << i for i, p in enumerate(inventory.pools) if p.name in names)


CASES = [
    # scenario, the pools it breaks on, what steering writes
    ("name", ("acl", "osguard", "flatcar"), [SelectorRequirement(REQUESTED, "NotIn", ("AzureContainerLinux", "AzureLinuxOSGuard", "Flatcar"))]),
    ("family", ("acl", "osguard", "flatcar"), [SelectorRequirement(REQUESTED, "NotIn", ("AzureContainerLinux", "AzureLinuxOSGuard", "Flatcar"))]),
    ("family", ("osguard",), [SelectorRequirement(REQUESTED, "NotIn", ("AzureLinuxOSGuard",))]),
    # Only osImage tells ACL apart: os-sku holds AzureLinux, as the general Azure Linux pool's does.
    ("osimage", ("acl", "osguard", "flatcar"), [SelectorRequirement(OS_SKU, "NotIn", ("Flatcar",)),
                                                SelectorRequirement(AGENTPOOL, "NotIn", ("acl", "osguard"))]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "breaks", "expected"), CASES, ids=[f"{c[0]}-{'+'.join(c[1])}" for c in CASES]
)
def test_steering_labels_per_scenario(
    scenario: str, breaks: tuple[str, ...], expected: list[SelectorRequirement]
) -> None:
    inventory = aks_inventory(scenario)
    mask = immutable_mask(inventory, *breaks)
    requirements, left = exclude_pools(inventory, mask, mask, Config())
    assert left == 0 and list(requirements) == expected
    for requirement in requirements:
        for value in requirement.values:
            carriers = {p.name for p in inventory.pools if p.labels.get(requirement.key) == value}
            assert carriers <= set(breaks), f"{requirement.key}={value} is also on {carriers - set(breaks)}"


def test_a_family_value_is_never_used_even_when_no_general_pool_carries_it_today() -> None:
    # Only ACL carries os-sku=AzureLinux here (no general Azure Linux pool yet): still not a steering value.
    nodes = aks_pool("system", "Ubuntu") + aks_pool("acl", "AzureContainerLinux", scenario="osimage")
    inventory = Inventory.build(nodes, Config())
    mask = immutable_mask(inventory, "acl")
    requirements, left = exclude_pools(inventory, mask, mask, Config())
    assert left == 0 and list(requirements) == [SelectorRequirement(AGENTPOOL, "NotIn", ("acl",))]


def test_the_marker_label_comes_first() -> None:
    nodes = aks_pool("system", "Ubuntu") + aks_pool(
        "acl", "AzureContainerLinux", extra={"immutable-os.io/profile": "azure-container-linux"}
    )
    inventory = Inventory.build(nodes, Config())
    mask = immutable_mask(inventory, "acl")
    requirements, _ = exclude_pools(inventory, mask, mask, Config())
    assert list(requirements) == [
        SelectorRequirement("immutable-os.io/profile", "NotIn", ("azure-container-linux",))
    ]


def test_an_unlabelled_pool_is_left_for_the_caller_to_refuse() -> None:
    nodes = [
        *aks_pool("system", "Ubuntu"),
        Node("bare", {"kubernetes.io/hostname": "bare"}, (), "Flatcar Container Linux 1"),
    ]
    inventory = Inventory.build(nodes, Config())
    mask = immutable_mask(inventory, "like-bare")
    requirements, left = exclude_pools(inventory, mask, mask, Config())
    assert requirements == () and left == mask


@pytest.mark.parametrize("scenario", ["name", "family", "osimage"])
def test_the_suggested_general_selector_matches_general_nodes_only(scenario: str) -> None:
    inventory = aks_inventory(scenario)
    selector = general_selector(inventory)
    assert selector is not None
    key, value = selector
    matched = [p for p in inventory.pools if p.labels.get(key) == value]
    assert matched and all(p.node_class.value == "general" for p in matched)
