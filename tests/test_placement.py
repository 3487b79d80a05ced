"""Placement: every selector operator, terms ORed / expressions ANDed, taints, classification, pools."""

from __future__ import annotations

from typing import Any

import pytest

from tests.aks import node_name
from tests.builders import OS_SKU, aks_pool, expr, mixed_inventory, required_terms, set_field, tweak
from webhook.core.config import Config, SelectorRequirement
from webhook.core.placement import Constraints, Inventory, Node, NodeClass, classify, place
from webhook.core.placement.selectors import Taint, Toleration, requirement_matches, tolerated
from webhook.core.workloads import pod_spec_view
from webhook.errors import ManifestError, NodeListError

LABELS = {"zone": "1", "size": "8", "pool": "gp", "gen": "1_0", "huge": "99999999999999999999"}
OPERATORS = [
    ("In hit", SelectorRequirement("zone", "In", ("1", "2")), True),
    ("In miss", SelectorRequirement("zone", "In", ("3",)), False),
    ("In absent key", SelectorRequirement("gpu", "In", ("1",)), False),
    ("NotIn hit", SelectorRequirement("zone", "NotIn", ("1",)), False),
    ("NotIn miss", SelectorRequirement("zone", "NotIn", ("2",)), True),
    ("NotIn absent key matches", SelectorRequirement("gpu", "NotIn", ("1",)), True),
    ("Exists", SelectorRequirement("zone", "Exists"), True),
    ("Exists absent", SelectorRequirement("gpu", "Exists"), False),
    ("DoesNotExist", SelectorRequirement("gpu", "DoesNotExist"), True),
    ("DoesNotExist present", SelectorRequirement("zone", "DoesNotExist"), False),
    ("Gt true", SelectorRequirement("size", "Gt", ("4",)), True),
    ("Gt equal is false", SelectorRequirement("size", "Gt", ("8",)), False),
    ("Lt true", SelectorRequirement("size", "Lt", ("16",)), True),
    ("Lt false", SelectorRequirement("size", "Lt", ("2",)), False),
    ("Gt non-integer label", SelectorRequirement("pool", "Gt", ("1",)), False),
    ("Gt absent key", SelectorRequirement("gpu", "Gt", ("1",)), False),
    ("Gt label Go cannot parse (1_0)", SelectorRequirement("gen", "Gt", ("1",)), False),
    ("Gt label past int64", SelectorRequirement("huge", "Gt", ("1",)), False),
    ("Gt signed value is no label value", SelectorRequirement("size", "Gt", ("-1",)), False),
    ("Lt signed value is no label value", SelectorRequirement("size", "Lt", ("+9",)), False),
]


@pytest.mark.parametrize(
    ("req", "matches"), [(r, m) for _, r, m in OPERATORS], ids=[n for n, _, _ in OPERATORS]
)
def test_requirement_operators(req: SelectorRequirement, matches: bool) -> None:
    assert requirement_matches(req, LABELS) is matches


TAINT = Taint("dedicated", "infra", "NoSchedule")
TOLERATIONS = [
    ("Equal same", Toleration("dedicated", "Equal", "infra", "NoSchedule"), True),
    ("Equal other value", Toleration("dedicated", "Equal", "gpu", "NoSchedule"), False),
    ("Equal no effect", Toleration("dedicated", "Equal", "infra", ""), True),
    ("other effect", Toleration("dedicated", "Equal", "infra", "NoExecute"), False),
    ("Exists key", Toleration("dedicated", "Exists", "", ""), True),
    ("Exists empty key tolerates all", Toleration("", "Exists", "", ""), True),
    ("Exists other key", Toleration("gpu", "Exists", "", ""), False),
]


@pytest.mark.parametrize(
    ("tol", "ok"), [(t, o) for _, t, o in TOLERATIONS], ids=[n for n, _, _ in TOLERATIONS]
)
def test_tolerations(tol: Toleration, ok: bool) -> None:
    assert tol.tolerates(TAINT) is ok


def test_prefer_no_schedule_never_blocks() -> None:
    assert tolerated((Taint("a", "", "PreferNoSchedule"),), (), ("NoSchedule", "NoExecute"))


def lands(pod: dict[str, Any], inventory: Inventory | None = None) -> list[str]:
    placement = place(Constraints.of(pod_spec_view(pod)), inventory or mixed_inventory())
    return sorted(p.name for p in placement.pools)


FLATCAR_ONLY = [
    ("nodeSelector", [set_field("nodeSelector", {OS_SKU: "Flatcar"})]),
    ("affinity In", [required_terms({"matchExpressions": [expr(OS_SKU, "In", "Flatcar")]})]),
    ("affinity NotIn", [required_terms({"matchExpressions": [expr(OS_SKU, "NotIn", "Ubuntu")]})]),
    ("two expressions ANDed", [required_terms({"matchExpressions": [expr("agentpool", "Exists"),
                                                                    expr(OS_SKU, "In", "Flatcar")]})]),
    ("matchFields node name", [required_terms({"matchFields": [expr("metadata.name", "In",
                                                                    node_name("flatcar", 1))]})]),
    ("hostname label", [set_field("nodeSelector", {"kubernetes.io/hostname": node_name("flatcar", 0)})]),
    ("nodeName", [set_field("nodeName", node_name("flatcar", 0))]),
]  # fmt: skip
BOTH = [
    ("no constraints", []),
    ("terms ORed", [required_terms({"matchExpressions": [expr(OS_SKU, "In", "Flatcar")]},
                                   {"matchExpressions": [expr(OS_SKU, "In", "Ubuntu")]})]),
    ("DoesNotExist on absent key", [required_terms({"matchExpressions": [expr("gpu", "DoesNotExist")]})]),
    ("matchFields NotIn one node", [required_terms({"matchFields": [expr("metadata.name", "NotIn",
                                                                         node_name("general", 0))]})]),
    ("preferred affinity ignored", [set_field("affinity", {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [expr(OS_SKU, "In", "Ubuntu")]}}]}})]),
]  # fmt: skip
NOWHERE = [
    ("unknown label value", [set_field("nodeSelector", {OS_SKU: "Windows"})]),
    ("empty term matches nothing", [required_terms({})]),
    ("no terms", [required_terms()]),
    ("unknown nodeName", [set_field("nodeName", "missing-node")]),
    ("field and label disagree", [required_terms({
        "matchFields": [expr("metadata.name", "In", node_name("general", 0))],
        "matchExpressions": [expr(OS_SKU, "In", "Flatcar")]})]),
]  # fmt: skip


@pytest.mark.parametrize("tweaks", [t for _, t in FLATCAR_ONLY], ids=[n for n, _ in FLATCAR_ONLY])
def test_specs_that_land_only_on_the_flatcar_pool(tweaks: list[Any]) -> None:
    assert lands(tweak(*tweaks)) == ["flatcar"]


@pytest.mark.parametrize("tweaks", [t for _, t in BOTH], ids=[n for n, _ in BOTH])
def test_specs_that_land_on_both_pools(tweaks: list[Any]) -> None:
    assert lands(tweak(*tweaks)) == ["flatcar", "general"]


@pytest.mark.parametrize("tweaks", [t for _, t in NOWHERE], ids=[n for n, _ in NOWHERE])
def test_specs_that_land_nowhere(tweaks: list[Any]) -> None:
    assert lands(tweak(*tweaks)) == []


def tainted_inventory(effect: str) -> Inventory:
    taint = (Taint("os", "flatcar", effect),)
    return Inventory.build(
        [*aks_pool("general", "Ubuntu"), *aks_pool("flatcar", "Flatcar", taints=taint)], Config()
    )


@pytest.mark.parametrize(
    ("effect", "tolerations", "expected"),
    [
        ("NoSchedule", [], ["general"]),
        ("NoExecute", [], ["general"]),
        ("PreferNoSchedule", [], ["flatcar", "general"]),
        ("NoSchedule", [{"key": "os", "operator": "Equal", "value": "flatcar", "effect": "NoSchedule"}],
         ["flatcar", "general"]),
        ("NoSchedule", [{"operator": "Exists"}], ["flatcar", "general"]),
        ("NoSchedule", [{"key": "os", "operator": "Equal", "value": "other"}], ["general"]),
    ],
    ids=["NoSchedule", "NoExecute", "PreferNoSchedule", "tolerated Equal", "tolerate all", "wrong value"],
)  # fmt: skip
def test_taints_and_tolerations(effect: str, tolerations: list[Any], expected: list[str]) -> None:
    assert lands(tweak(set_field("tolerations", tolerations)), tainted_inventory(effect)) == expected


def test_node_name_bypasses_no_schedule_but_not_no_execute() -> None:
    pinned = tweak(set_field("nodeName", node_name("flatcar", 0)))
    assert lands(pinned, tainted_inventory("NoSchedule")) == ["flatcar"]
    assert lands(pinned, tainted_inventory("NoExecute")) == []


def test_node_name_still_checks_the_node_selector() -> None:
    pod = tweak(set_field("nodeName", node_name("flatcar", 0)), set_field("nodeSelector", {OS_SKU: "Ubuntu"}))
    assert lands(pod) == []


def test_transient_condition_taints_do_not_split_or_hide_a_pool() -> None:
    nodes = aks_pool("flatcar", "Flatcar")
    nodes[0] = Node(
        nodes[0].name, nodes[0].labels, (Taint("node.kubernetes.io/not-ready", "", "NoSchedule"),)
    )
    inventory = Inventory.build(nodes, Config())
    assert len(inventory.pools) == 1
    assert lands(tweak(), inventory) == ["flatcar"]


def test_nodes_of_a_pool_are_grouped_despite_per_node_labels() -> None:
    nodes = aks_pool("general", "Ubuntu", count=50) + aks_pool("flatcar", "Flatcar", count=30)
    inventory = Inventory.build(nodes, Config())
    assert [(p.name, len(p.members), p.node_class) for p in inventory.pools] == [
        ("flatcar", 30, NodeClass.IMMUTABLE),
        ("general", 50, NodeClass.GENERAL),
    ]
    assert inventory.node_count == 80


def test_a_pool_spanning_zones_is_one_pool_with_every_node_counted() -> None:
    nodes = aks_pool("general", "Ubuntu", count=6, zones=3) + aks_pool(
        "acl", "AzureContainerLinux", count=4, zones=2
    )
    inventory = Inventory.build(nodes, Config())
    assert len(inventory.pools) == 5, "zones are scheduling groups"
    assert sorted(p.name for p in inventory.pools) == ["acl", "acl", "general", "general", "general"]
    assert inventory.nodes_per_pool == {"acl": 4, "general": 6}
    placement = place(Constraints.of(pod_spec_view(tweak())), inventory)
    assert [p.name for p in placement.named] == ["acl", "general"]


def test_a_pool_whose_nodes_are_classified_apart_is_shown_as_two() -> None:
    nodes = aks_pool("mixed", "Ubuntu", count=2)
    nodes.append(
        Node(
            "odd", {**nodes[0].labels, "kubernetes.io/hostname": "odd", "immutable-os.io/profile": "flatcar"}
        )
    )
    names = sorted(p.name for p in Inventory.build(nodes, Config()).pools)
    assert names == ["mixed", "mixed#2"]


def test_a_label_whose_value_is_the_node_name_is_per_node() -> None:
    nodes = [Node(f"n{i}", {"agentpool": "a", "example.com/instance": f"n{i}"}) for i in range(5)]
    inventory = Inventory.build(nodes, Config())
    assert len(inventory.pools) == 1
    pod = tweak(set_field("nodeSelector", {"example.com/instance": "n3"}))
    assert lands(pod, inventory) == ["a"]
    assert lands(tweak(set_field("nodeSelector", {"example.com/instance": "n9"})), inventory) == []


REQUESTED = "kubernetes.azure.com/os-sku-requested"
EFFECTIVE = "kubernetes.azure.com/os-sku-effective"
IMAGE = "kubernetes.azure.com/node-image-version"
AZL3 = "Microsoft Azure Linux 3.0"
CLASSIFY = [
    ("OS Guard by os-sku", {OS_SKU: "AzureLinuxOSGuard"}, "", "", "Azure Linux OS Guard"),
    ("OS Guard by os-sku AzureLinux3OSGuard", {OS_SKU: "AzureLinux3OSGuard"}, AZL3, "", "Azure Linux OS Guard"),
    ("OS Guard by requested, family in os-sku", {OS_SKU: "AzureLinux", REQUESTED: "AzureLinuxOSGuard"}, AZL3, "",
     "Azure Linux OS Guard"),
    ("OS Guard by effective", {OS_SKU: "AzureLinux", EFFECTIVE: "AzureLinux3OSGuard"}, AZL3, "", "Azure Linux OS Guard"),
    ("OS Guard by image version", {OS_SKU: "AzureLinux", IMAGE: "AKSAzureLinux-OSGuardV3gen2fipsTL-202511.10.0"},
     AZL3, "6.6.104.2-1.azl3", "Azure Linux OS Guard"),
    ("ACL by requested, family in os-sku", {OS_SKU: "AzureLinux", REQUESTED: "AzureContainerLinux"}, "", "",
     "Azure Container Linux"),
    ("ACL by gallery image version", {IMAGE: "AKSAzureLinux-aclgen2TL-202511.10.0"}, "", "", "Azure Container Linux"),
    ("ACL by docs image version", {IMAGE: "AKSAzureContainerLinux-gen2-202511.10.0"}, "", "", "Azure Container Linux"),
    ("Flatcar by os-sku", {OS_SKU: "Flatcar"}, "", "", "Flatcar Container Linux"),
    ("Flatcar by osImage", {}, "Flatcar Container Linux by Kinvolk 4230.2.3", "", "Flatcar Container Linux"),
    ("Flatcar by kernel", {}, "", "6.6.95-flatcar", "Flatcar Container Linux"),
    ("Azure Container Linux", {OS_SKU: "AzureContainerLinux"}, "", "", "Azure Container Linux"),
    ("ACL by osImage alone", {OS_SKU: "AzureLinux", IMAGE: "AKSAzureLinux-V3gen2-202511.10.0"},
     "Microsoft Azure Container Linux 3.0.20251110", "6.6.104.2-1.azl3", "Azure Container Linux"),
    ("Bottlerocket", {}, "Bottlerocket OS 1.20.0 (aws-k8s-1.30)", "", "Bottlerocket"),
    ("Talos", {}, "Talos (v1.7.6)", "", "Talos Linux"),
    ("Fedora CoreOS", {}, "Fedora CoreOS 40.20240616.3.0", "", "Fedora CoreOS"),
    ("COS", {}, "Container-Optimized OS from Google", "", "Container-Optimized OS"),
    ("marker label naming a profile", {"immutable-os.io/profile": "flatcar"}, "", "", "Flatcar Container Linux"),
    ("marker label naming no profile", {"immutable-os.io/profile": "locked"}, "", "", "locked"),
    ("Ubuntu", {OS_SKU: "Ubuntu", REQUESTED: "Ubuntu", EFFECTIVE: "Ubuntu2204"}, "Ubuntu 22.04.5 LTS",
     "5.15.0-1092-azure", ""),
    ("Azure Linux 3 (not OS Guard, not ACL)", {OS_SKU: "AzureLinux", REQUESTED: "AzureLinux", EFFECTIVE: "AzureLinux3",
     IMAGE: "AKSAzureLinux-V3gen2-202511.10.0"}, AZL3, "6.6.104.2-1.azl3", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "os_image", "kernel", "profile"), [c[1:] for c in CLASSIFY], ids=[c[0] for c in CLASSIFY]
)
def test_classification_by_profile_evidence(
    labels: dict[str, str], os_image: str, kernel: str, profile: str
) -> None:
    result = classify(Node("n", labels, (), os_image, kernel), Config())
    assert result.profile == profile
    assert result.node_class is (NodeClass.IMMUTABLE if profile else NodeClass.GENERAL)


def test_disabled_profile_and_custom_selector() -> None:
    config = Config.from_dict(
        {
            "profiles": {"flatcar": False},
            "immutableNodeSelectors": [{"name": "locked", "matchLabels": {"os": "x"}}],
        }
    )
    assert classify(Node("n", {OS_SKU: "Flatcar"}), config).node_class is NodeClass.GENERAL
    assert classify(Node("n", {"os": "x"}), config).profile == "locked"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"kind": "Node"}, "n.metadata.name"),
        ({"metadata": {"name": "a", "labels": ["x"]}}, "n.metadata.labels"),
        ({"metadata": {"name": "a"}, "spec": {"taints": [{"key": "k"}]}}, "n.spec.taints[0]"),
    ],
    ids=["no name", "labels not a map", "taint without effect"],
)
def test_malformed_nodes_name_the_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(NodeListError) as err:
        Node.from_wire(obj, "n")
    assert err.value.field == field


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ([{"matchExpressions": [{"key": "a"}]}], "matchExpressions[0].operator"),
        ([{"matchFields": [expr("metadata.labels", "In", "1")]}], "matchFields[0]"),
        ([{"matchExpressions": [{"operator": "Exists"}]}], "matchExpressions[0].key"),
    ],
    ids=["missing operator", "matchFields other than metadata.name", "missing key"],
)
def test_malformed_affinity_names_the_field(terms: list[Any], field: str) -> None:
    with pytest.raises(ManifestError) as err:
        Constraints.of(pod_spec_view(tweak(required_terms(*terms))))
    assert err.value.field.endswith("nodeSelectorTerms[0]." + field)


def per_node_inventory() -> Inventory:
    """One pool whose members differ only in per-node labels; n3 has no hostname label at all."""
    nodes = [Node(f"n{i}", {"agentpool": "a", "kubernetes.io/hostname": f"h{i}"}) for i in range(3)]
    nodes.append(Node("n3", {"agentpool": "a", "example.com/node": "n3"}))
    inventory = Inventory.build(nodes, Config())
    assert len(inventory.pools) == 1
    return inventory


PER_NODE = [
    ("hostname DoesNotExist: only n3", [expr("kubernetes.io/hostname", "DoesNotExist")], ["a"]),
    ("hostname Exists", [expr("kubernetes.io/hostname", "Exists")], ["a"]),
    ("hostname NotIn every hostname: n3 remains", [expr("kubernetes.io/hostname", "NotIn", "h0", "h1", "h2")], ["a"]),
    ("NotIn all, and DoesNotExist on n3's label: none", [expr("kubernetes.io/hostname", "NotIn", "h0", "h1", "h2"),
                                                          expr("example.com/node", "DoesNotExist")], []),
    ("per-node label In its own name", [expr("example.com/node", "In", "n3")], ["a"]),
    ("per-node label NotIn, hostname Exists", [expr("example.com/node", "NotIn", "n3"),
                                                 expr("kubernetes.io/hostname", "Exists")], ["a"]),
    ("hostname Exists and n3's label Exists: none", [expr("kubernetes.io/hostname", "Exists"),
                                                      expr("example.com/node", "Exists")], []),
]  # fmt: skip


@pytest.mark.parametrize(("expressions", "expected"), [c[1:] for c in PER_NODE], ids=[c[0] for c in PER_NODE])
def test_per_node_requirements_are_decided_by_representative_nodes(
    expressions: list[Any], expected: list[str]
) -> None:
    assert lands(tweak(required_terms({"matchExpressions": expressions})), per_node_inventory()) == expected


def test_match_fields_not_in_every_member_but_one() -> None:
    names = ["n0", "n1", "n2"]
    pod = tweak(required_terms({"matchFields": [expr("metadata.name", "NotIn", *names)]}))
    assert lands(pod, per_node_inventory()) == ["a"]
    pod = tweak(required_terms({"matchFields": [expr("metadata.name", "NotIn", *names, "n3")]}))
    assert lands(pod, per_node_inventory()) == []
