"""Placement by label evidence alone, used when the live inventory is empty or stale."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import OS_SKU, expr, host_path, request_for, required_terms, set_field, tweak
from webhook.core.admission import Endpoint, Outcome, answer, decide
from webhook.core.assessment import EVIDENCE_ONLY_NOTE
from webhook.core.config import Config
from webhook.core.mutation import apply_patch
from webhook.core.placement import Constraints, NodeClass, place_by_evidence
from webhook.core.workloads import pod_spec_view


def classes(*tweaks: Any, config: Config | None = None) -> set[str]:
    placement = place_by_evidence(Constraints.of(pod_spec_view(tweak(*tweaks))), config or Config())
    return {c.value for c in placement.classes}


CASES = [
    ("no constraints: either", [], {"general", "immutable"}),
    ("nodeSelector on an immutable os-sku", [set_field("nodeSelector", {OS_SKU: "Flatcar"})], {"immutable"}),
    ("affinity In immutable values only", [required_terms({"matchExpressions": [expr(OS_SKU, "In", "Flatcar", "AzureLinuxOSGuard")]})], {"immutable"}),
    ("affinity In a general value too", [required_terms({"matchExpressions": [expr(OS_SKU, "In", "Flatcar", "Ubuntu")]})], {"general", "immutable"}),
    ("marker label required", [set_field("nodeSelector", {"immutable-os.io/profile": "flatcar"})], {"immutable"}),
    ("already steered", [required_terms({"matchExpressions": [
        expr(OS_SKU, "NotIn", "AzureContainerLinux", "AzureLinuxOSGuard", "AzureLinux3OSGuard", "Flatcar"),
        expr(OS_SKU + "-requested", "NotIn", "AzureContainerLinux", "AzureLinuxOSGuard", "AzureLinux3OSGuard", "Flatcar"),
        expr(OS_SKU + "-effective", "NotIn", "AzureContainerLinux", "AzureLinuxOSGuard", "AzureLinux3OSGuard", "Flatcar"),
        expr("immutable-os.io/profile", "DoesNotExist"),
        expr("cloud.google.com/gke-os-distribution", "NotIn", "cos")]})], {"general"}),
    ("os-sku names only the family: OS Guard could carry it", [set_field("nodeSelector", {OS_SKU: "AzureLinux"})],
     {"general", "immutable"}),
    ("a marker value of a known profile", [set_field("nodeSelector", {"immutable-os.io/profile": "talos"})], {"immutable"}),
    ("unrelated label: open world", [set_field("nodeSelector", {"agentpool": "batch"})], {"general", "immutable"}),
    ("empty term matches nothing", [required_terms({})], set()),
]  # fmt: skip


@pytest.mark.parametrize(("tweaks", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_evidence_placement(tweaks: list[Any], expected: set[str]) -> None:
    assert classes(*tweaks) == expected


def test_disabled_profile_is_not_evidence() -> None:
    config = Config.from_dict({"profiles": {"flatcar": False}})
    # No longer immutable-only: such a node is general unless something else (the marker label) says not.
    assert "general" in classes(set_field("nodeSelector", {OS_SKU: "Flatcar"}), config=config)


def test_without_inventory_the_decision_says_so_and_steering_still_works() -> None:
    pod = tweak(host_path("/usr/local/bin"))
    decision = decide(request_for(pod), config=Config(), inventory=None, namespace_labels={})
    assert decision.mutated.outcome is Outcome.STEERED and decision.allowed
    steered = apply_patch(pod, decision.mutated.patch)
    placement = place_by_evidence(Constraints.of(pod_spec_view(steered)), Config())
    assert placement.classes == {NodeClass.GENERAL}
    pinned = tweak(host_path("/usr/local/bin"), set_field("nodeSelector", {OS_SKU: "AzureLinuxOSGuard"}))
    verdict = answer(request_for(pinned), endpoint=Endpoint.VALIDATE, config=Config(), inventory=None,
                    namespace_labels={"immutable-os.io/mode": "warn"})  # fmt: skip
    assert verdict.outcome is Outcome.WARNED and EVIDENCE_ONLY_NOTE in verdict.warnings
