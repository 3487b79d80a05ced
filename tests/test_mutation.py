"""Steering patches: every shape of existing affinity, every workload kind, idempotence, exclusions."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from tests.builders import (
    OS_SKU,
    aks_pool,
    expr,
    host_path,
    mixed_inventory,
    request_for,
    required_terms,
    set_field,
    tweak,
    wrap,
)
from webhook.core.admission import Endpoint, Outcome, answer
from webhook.core.config import Config, SelectorRequirement
from webhook.core.mutation import SteeringPlan, apply_patch, steer_away_from
from webhook.core.placement import Constraints, Inventory, NodeClass, place
from webhook.core.workloads import SUPPORTED_KINDS, pod_spec_view

WRITES_USR = host_path("/usr/local/bin")

EXCLUSION = SelectorRequirement("immutable-os.io/profile", "NotIn", ("flatcar",))
NOT_FLATCAR = EXCLUSION.to_wire()


def steer(obj: dict[str, Any], config: Config | None = None) -> SteeringPlan:
    plan = steer_away_from(
        obj, pod_spec_view(obj), [EXCLUSION], "Flatcar Container Linux", config or Config()
    )
    assert isinstance(plan, SteeringPlan), plan
    assert jsonpatch.apply_patch(obj, list(plan.patch)) == plan.steered_object
    return plan


def affinity_of(obj: dict[str, Any]) -> Any:
    return obj["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


def test_no_affinity_gets_one_term() -> None:
    plan = steer(tweak(WRITES_USR))
    assert affinity_of(dict(plan.steered_object)) == {
        "nodeSelectorTerms": [{"matchExpressions": [NOT_FLATCAR]}]
    }
    assert plan.patch[0]["path"] == "/spec/affinity"


def test_pod_anti_affinity_is_kept() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}}
    plan = steer(tweak(set_field("affinity", anti)))
    assert plan.patch[0]["path"] == "/spec/affinity/nodeAffinity"
    assert plan.steered_object["spec"]["affinity"]["podAntiAffinity"] == anti["podAntiAffinity"]


def test_preferred_only_node_affinity_gets_required() -> None:
    preferred = [{"weight": 1, "preference": {"matchExpressions": [expr("a", "Exists")]}}]
    plan = steer(
        tweak(
            set_field(
                "affinity", {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}
            )
        )
    )
    assert (
        plan.patch[0]["path"] == "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
    )
    assert (
        plan.steered_object["spec"]["affinity"]["nodeAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        == preferred
    )


def test_every_term_gets_the_exclusion_and_keeps_its_own_expressions() -> None:
    terms = [
        {"matchExpressions": [expr("zone", "In", "1")]},
        {"matchFields": [expr("metadata.name", "In", "n1")]},
        {
            "matchExpressions": [expr("zone", "In", "2")],
            "matchFields": [expr("metadata.name", "NotIn", "n2")],
        },
    ]
    plan = steer(tweak(required_terms(*terms)))
    steered = affinity_of(dict(plan.steered_object))["nodeSelectorTerms"]
    assert steered[0]["matchExpressions"] == [expr("zone", "In", "1"), NOT_FLATCAR]
    assert steered[1] == {"matchFields": terms[1]["matchFields"], "matchExpressions": [NOT_FLATCAR]}
    assert steered[2]["matchExpressions"] == [expr("zone", "In", "2"), NOT_FLATCAR]
    assert steered[2]["matchFields"] == terms[2]["matchFields"]


def test_a_term_that_already_excludes_is_left_alone() -> None:
    terms = [{"matchExpressions": [NOT_FLATCAR]}, {"matchExpressions": [expr("zone", "In", "1")]}]
    plan = steer(tweak(required_terms(*terms)))
    paths = [op["path"] for op in plan.patch]
    assert (
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/1/matchExpressions/-"
        in paths
    )
    assert not any("nodeSelectorTerms/0" in p for p in paths)


def test_annotation_is_added_next_to_existing_ones() -> None:
    pod = tweak(WRITES_USR)
    pod["metadata"]["annotations"] = {"team": "infra"}
    plan = steer(pod)
    assert plan.steered_object["metadata"]["annotations"] == {
        "team": "infra",
        "immutable-os.io/steered": "Flatcar Container Linux",
    }


@pytest.mark.parametrize("kind", SUPPORTED_KINDS)
def test_every_kind_is_patched_under_its_pod_template(kind: str) -> None:
    if kind == "PodTemplate":
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "t"},
                               "template": {"spec": tweak(WRITES_USR)["spec"]}}  # fmt: skip
    else:
        obj = wrap(tweak(WRITES_USR), kind)
    pod = pod_spec_view(obj)
    verdict = answer(request_for(obj), endpoint=Endpoint.MUTATE, config=Config(), inventory=mixed_inventory(),
                    namespace_labels={})  # fmt: skip
    assert verdict.outcome is Outcome.STEERED
    prefix = "/" + "/".join(pod.template_path)
    assert all(op["path"].startswith(prefix) for op in verdict.patch)
    patched = jsonpatch.apply_patch(obj, list(verdict.patch))
    steered_pod = pod_spec_view(patched)
    assert steered_pod.annotations["immutable-os.io/steered"] == "Flatcar Container Linux"
    assert place(Constraints.of(steered_pod), mixed_inventory()).classes == {NodeClass.GENERAL}


def test_steering_is_idempotent() -> None:
    obj = wrap(tweak(WRITES_USR), "Deployment")
    context: dict[str, Any] = {"config": Config(), "inventory": mixed_inventory(), "namespace_labels": {}}
    first = answer(request_for(obj), endpoint=Endpoint.MUTATE, **context)
    patched = apply_patch(obj, first.patch)
    second = answer(request_for(patched), endpoint=Endpoint.MUTATE, **context)
    assert first.patch and not second.patch
    assert second.outcome is Outcome.UNCHANGED
    assert answer(request_for(patched), endpoint=Endpoint.VALIDATE, **context).outcome is Outcome.WORKS


def test_node_selector_strategy_sets_the_configured_labels() -> None:
    config = Config.from_dict({"steering": {"strategy": "nodeSelector", "nodeSelector": {OS_SKU: "Ubuntu"}}})
    plan = steer(tweak(set_field("nodeSelector", {"kubernetes.io/os": "linux"})), config)
    assert plan.steered_object["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", OS_SKU: "Ubuntu"}
    assert plan.patch[0] == {
        "op": "add",
        "path": f"/spec/nodeSelector/{OS_SKU.replace('/', '~1')}",
        "value": "Ubuntu",
    }


def test_node_selector_strategy_refuses_a_conflicting_selector() -> None:
    config = Config.from_dict(
        {"steering": {"strategy": "nodeSelector", "nodeSelector": {"agentpool": "general"}}}
    )
    obj = tweak(set_field("nodeSelector", {"agentpool": "batch"}))
    result = steer_away_from(obj, pod_spec_view(obj), [EXCLUSION], "x", config)
    assert not isinstance(result, SteeringPlan)
    assert "conflicts" in result.reason


def test_inventory_of_only_general_nodes_never_needs_steering() -> None:
    inventory = Inventory.build(aks_pool("general", "Ubuntu"), Config())
    verdict = answer(request_for(tweak(WRITES_USR)), endpoint=Endpoint.MUTATE, config=Config(),
                    inventory=inventory, namespace_labels={})  # fmt: skip
    assert verdict.outcome is Outcome.UNCHANGED and not verdict.patch


def test_apply_patch_leaves_the_reviewed_object_unchanged() -> None:
    import copy

    obj = wrap(
        tweak(WRITES_USR, required_terms({"matchExpressions": [expr("zone", "In", "1")]})), "Deployment"
    )
    before = copy.deepcopy(obj)
    plan = steer(obj)
    assert obj == before
    assert plan.steered_object != before
    assert (
        plan.steered_object["spec"]["template"]["spec"]["containers"]
        is obj["spec"]["template"]["spec"]["containers"]
    )
