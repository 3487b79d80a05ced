"""The decision: modes, exemptions, findings and placement, and the responses the apiserver receives."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from typing import Any

import jsonpatch
import pytest

from tests.builders import (
    OS_SKU,
    aks_pool,
    host_path,
    minimal_pod,
    mixed_inventory,
    request_for,
    review_for,
    set_field,
    tweak,
    wrap,
)
from webhook.core.admission import (
    MAX_WARNING_LENGTH,
    MAX_WARNINGS,
    Endpoint,
    Outcome,
    Verdict,
    decide,
    errored,
    judge,
    read_review,
    respond,
)
from webhook.core.config import Config, Mode
from webhook.core.placement import Inventory, Node
from webhook.errors import ReviewError

ON_FLATCAR = set_field("nodeSelector", {OS_SKU: "Flatcar"})
ON_UBUNTU = set_field("nodeSelector", {OS_SKU: "Ubuntu"})


def validate(obj: dict[str, Any], config: Config | None = None, labels: dict[str, str] | None = None,
             inventory: Inventory | None = None, **request: Any) -> Verdict:  # fmt: skip
    return judge(request_for(obj, **request), endpoint=Endpoint.VALIDATE, config=config or Config(),
                 inventory=inventory or mixed_inventory(), namespace_labels=labels or {})  # fmt: skip


def mutate(obj: dict[str, Any], config: Config | None = None, inventory: Inventory | None = None) -> Verdict:
    return judge(request_for(obj), endpoint=Endpoint.MUTATE, config=config or Config(),
                 inventory=inventory or mixed_inventory(), namespace_labels={})  # fmt: skip


def test_clean_pod_is_untouched_on_any_pool() -> None:
    for pod in (tweak(), tweak(ON_FLATCAR), tweak(ON_UBUNTU)):
        for verdict in (validate(pod), mutate(pod)):
            assert verdict.outcome is Outcome.CLEAN
            assert respond("u", verdict, Endpoint.MUTATE)["response"] == {"uid": "u", "allowed": True}


def test_host_access_on_general_nodes_only_is_allowed_and_recorded() -> None:
    verdict = validate(tweak(host_path("/var/lib/x"), ON_UBUNTU))
    assert verdict.outcome is Outcome.GENERAL and verdict.allowed and not verdict.warnings
    assert verdict.audit["decision"] == "general"
    assert verdict.audit["findings"] == "host-path:spec.volumes[0].hostPath.path"


def test_enforce_denies_with_a_message_a_person_acts_on() -> None:
    verdict = validate(tweak(host_path("/usr/local/bin"), ON_FLATCAR))
    assert not verdict.allowed and verdict.outcome is Outcome.DENIED
    message = verdict.message
    for part in (
        "Pod default/app",
        "can only land on immutable-OS nodes",
        "pool flatcar (Flatcar Container Linux)",
        "host-path spec.volumes[0].hostPath.path",
        "/usr/local/bin",
        "read-only",
        "Fix:",
    ):
        assert part in message
    response = respond("uid-9", verdict, Endpoint.VALIDATE)["response"]
    assert response["status"]["code"] == 403 and "warnings" not in response


def test_warn_allows_with_warnings_and_audit_allows_silently() -> None:
    pod = tweak(set_field("hostPID", True), ON_FLATCAR)
    warned = validate(pod, Config(mode=Mode.WARN))
    assert warned.allowed and warned.outcome is Outcome.WARNED
    assert any("host-pid spec.hostPID" in w for w in warned.warnings)
    audited = validate(pod, Config(mode=Mode.AUDIT))
    assert audited.allowed and audited.outcome is Outcome.AUDITED and not audited.warnings
    assert audited.audit["decision"] == "audited" and audited.audit["findings"] == "host-pid:spec.hostPID"


def test_off_mode_does_nothing() -> None:
    verdict = validate(tweak(set_field("hostPID", True), ON_FLATCAR), Config(mode=Mode.OFF))
    assert verdict.outcome is Outcome.OFF and verdict.allowed and not verdict.audit


@pytest.mark.parametrize(
    ("label", "outcome"),
    [("warn", Outcome.WARNED), ("audit", Outcome.AUDITED), ("off", Outcome.OFF), ("enforce", Outcome.DENIED)],
)
def test_namespace_label_overrides_the_mode(label: str, outcome: Outcome) -> None:
    verdict = validate(tweak(set_field("hostIPC", True), ON_FLATCAR), Config(mode=Mode.AUDIT),
                       labels={"immutable-os.io/mode": label})  # fmt: skip
    assert verdict.outcome is outcome


def test_invalid_namespace_label_fails_safe_to_enforce_and_says_so() -> None:
    pod = tweak(set_field("hostIPC", True), ON_FLATCAR)
    assert (
        validate(pod, Config(mode=Mode.WARN), labels={"immutable-os.io/mode": "strict"}).outcome
        is Outcome.DENIED
    )
    warned = validate(tweak(set_field("hostIPC", True)), Config(steering=replace(Config().steering, enabled=False)),
                      labels={"immutable-os.io/mode": "strict"})  # fmt: skip
    assert warned.outcome is Outcome.DENIED


@pytest.mark.parametrize(
    ("exemptions", "request_args", "reason"),
    [
        ({"namespaces": ["tools"]}, {"namespace": "tools"}, "namespace"),
        ({"usernames": ["bob"]}, {"username": "bob"}, "user"),
        ({"groups": ["sre"]}, {"groups": ("system:authenticated", "sre")}, "group"),
    ],
    ids=["namespace", "user", "group"],
)
def test_exemptions(exemptions: dict[str, Any], request_args: dict[str, Any], reason: str) -> None:
    config = Config.from_dict({"exemptions": exemptions})
    verdict = validate(tweak(set_field("hostPID", True), ON_FLATCAR), config, **request_args)
    assert verdict.outcome is Outcome.EXEMPT and verdict.allowed and verdict.audit == {"exempt": reason}
    assert validate(tweak(set_field("hostPID", True), ON_FLATCAR), config).outcome is Outcome.DENIED


def test_runtime_class_exemption() -> None:
    config = Config.from_dict({"exemptions": {"runtimeClasses": ["kata"]}})
    pod = tweak(set_field("hostPID", True), ON_FLATCAR, set_field("runtimeClassName", "kata"))
    assert validate(pod, config).outcome is Outcome.EXEMPT


def test_warning_severity_never_denies() -> None:
    config = Config.from_dict({"checks": {"host-network": {"severity": "warning"}}})
    assert validate(tweak(set_field("hostNetwork", True), ON_FLATCAR), config).outcome is Outcome.WARNED
    both = tweak(set_field("hostNetwork", True), set_field("hostPID", True), ON_FLATCAR)
    assert validate(both, config).outcome is Outcome.DENIED


def test_both_classes_are_steered_by_mutate_and_the_result_is_admitted() -> None:
    pod = tweak(host_path("/var/log"))
    decision = decide(request_for(pod), config=Config(), inventory=mixed_inventory(), namespace_labels={})
    assert decision.mutated.outcome is Outcome.STEERED and decision.allowed
    assert decision.validated.outcome is Outcome.GENERAL
    assert (
        decision.warnings[0]
        == "host-path: steered away from pool flatcar (Flatcar Container Linux) with node affinity"
    )
    response = respond("u", decision.mutated, Endpoint.MUTATE)["response"]
    patch = json.loads(base64.b64decode(response["patch"]))
    assert response["patchType"] == "JSONPatch"
    assert jsonpatch.apply_patch(pod, patch)["metadata"]["annotations"]["immutable-os.io/steered"]


def test_validate_denies_an_unsteered_pod_that_could_land_on_immutable_nodes() -> None:
    verdict = validate(tweak(host_path("/var/log")))
    assert verdict.outcome is Outcome.DENIED
    assert (
        "was not steered away" in verdict.message and "mutating webhook did not steer it" in verdict.message
    )


def test_steering_disabled_judges_both_as_immutable() -> None:
    config = Config.from_dict({"steering": {"enabled": False}, "mode": "warn"})
    assert mutate(tweak(host_path("/x")), config).patch == ()
    verdict = validate(tweak(host_path("/x")), config)
    assert verdict.outcome is Outcome.WARNED and "steering is disabled" in verdict.warnings[0]


def test_steering_that_would_leave_no_general_node_is_refused() -> None:
    config = Config.from_dict(
        {"steering": {"strategy": "nodeSelector", "nodeSelector": {"agentpool": "gpu"}}}
    )
    assert mutate(tweak(host_path("/x")), config).patch == ()
    verdict = validate(tweak(host_path("/x")), config)
    assert verdict.outcome is Outcome.DENIED and "no general-purpose node" in verdict.message


def test_os_image_only_immutable_pool_cannot_be_steered_and_the_fix_says_label_it() -> None:
    bare = [Node(f"fc{i}", {"agentpool": "edge", "kubernetes.io/hostname": f"fc{i}"}, (), "Flatcar Container Linux 1")
            for i in range(2)]  # fmt: skip
    inventory = Inventory.build([*aks_pool("general", "Ubuntu"), *bare], Config())
    assert mutate(tweak(host_path("/x")), inventory=inventory).patch == ()
    verdict = validate(tweak(host_path("/x")), inventory=inventory)
    assert verdict.outcome is Outcome.DENIED
    assert "osImage evidence only" in verdict.message and "immutable-os.io/profile" in verdict.message


def test_user_marked_pool_is_steered_with_does_not_exist() -> None:
    marked = [Node("k1", {"kubernetes.io/hostname": "k1", "immutable-os.io/profile": "flatcar"})]
    inventory = Inventory.build([Node("k0", {"kubernetes.io/hostname": "k0"}), *marked], Config())
    verdict = mutate(tweak(host_path("/x")), inventory=inventory)
    assert verdict.outcome is Outcome.STEERED
    expressions = verdict.patch[0]["value"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert expressions["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "immutable-os.io/profile", "operator": "DoesNotExist"}
    ]


def test_nowhere_is_allowed_with_a_warning() -> None:
    verdict = validate(tweak(host_path("/x"), set_field("nodeSelector", {"agentpool": "gone"})))
    assert verdict.outcome is Outcome.NOWHERE and verdict.allowed
    assert "matches no node of the 4 known" in verdict.warnings[0]


def test_kubectl_debug_node_pod_is_denied_unless_the_group_is_exempt() -> None:
    # The shape of `kubectl debug node/<node> -it --image=busybox`: nodeName pinned, host namespaces, / at /host.
    debug = minimal_pod("node-debugger-aks-flatcar-1234-vmss000000-abcde")
    debug["spec"] = {
        "nodeName": "aks-flatcar-1234-vmss000000",
        "hostPID": True,
        "hostIPC": True,
        "hostNetwork": True,
        "restartPolicy": "Never",
        "containers": [{"name": "debugger", "image": "busybox", "stdin": True, "tty": True,
                        "volumeMounts": [{"name": "host-root", "mountPath": "/host"}]}],
        "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
        "tolerations": [{"operator": "Exists"}],
    }  # fmt: skip
    denied = validate(debug)
    assert denied.outcome is Outcome.DENIED and "pin it to a general-purpose node" in denied.message
    config = Config.from_dict({"exemptions": {"groups": ["sre-breakglass"]}})
    assert validate(debug, config, groups=("sre-breakglass",)).outcome is Outcome.EXEMPT


def test_operations_and_subresources_that_are_not_judged() -> None:
    pod = tweak(set_field("hostPID", True), ON_FLATCAR)
    assert validate(pod, operation="DELETE").outcome is Outcome.SKIPPED
    assert validate(pod, operation="UPDATE").outcome is Outcome.SKIPPED  # pod spec is immutable
    assert validate(pod, operation="UPDATE", sub_resource="status").outcome is Outcome.SKIPPED
    assert validate(wrap(pod, "Deployment"), operation="UPDATE").outcome is Outcome.DENIED
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}
    assert validate(config_map).outcome is Outcome.SKIPPED


def test_ephemeral_container_update_is_judged_where_the_pod_runs_and_never_steered() -> None:
    pod = tweak(host_path("/data"), set_field("nodeName", "aks-flatcar-1234-vmss000001"))
    pod["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox"}]
    verdict = validate(pod, operation="UPDATE", sub_resource="ephemeralcontainers")
    assert verdict.outcome is Outcome.DENIED
    on_general = tweak(host_path("/data"), set_field("nodeName", "aks-general-1234-vmss000001"))
    assert validate(on_general, operation="UPDATE", sub_resource="ephemeralcontainers").allowed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "<body>"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}, "apiVersion"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {}}}, "request.uid"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}, "request.uid"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "u", "kind": {"kind": "Pod"}}}, "request.operation"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE"}}, "request.object"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": "x"}}, "request.object"),
    ],
    ids=["not an object", "v1beta1", "no request", "no uid", "empty uid", "no operation", "create without object",
         "object not an object"],
)  # fmt: skip
def test_malformed_reviews_name_what_is_missing(body: Any, field: str) -> None:
    with pytest.raises(ReviewError) as err:
        read_review(body)
    assert err.value.field == field


def test_read_review_reads_every_field() -> None:
    request = read_review(review_for(tweak(ON_FLATCAR), username="bob", groups=["g1", "g2"]))
    assert (request.kind, request.operation, request.namespace, request.name) == (
        "Pod",
        "CREATE",
        "default",
        "app",
    )
    assert request.username == "bob" and request.groups == {"g1", "g2"}


def test_warnings_are_capped_in_count_and_length() -> None:
    verdict = Verdict(Outcome.WARNED, warnings=tuple("x" * 1000 for _ in range(20)))
    warnings = respond("u", verdict, Endpoint.VALIDATE)["response"]["warnings"]
    assert len(warnings) == MAX_WARNINGS and all(len(w) <= MAX_WARNING_LENGTH for w in warnings)
    assert warnings[-1].endswith("and 15 more")


def test_validate_never_sends_a_patch_and_denials_carry_no_patch() -> None:
    steered = mutate(tweak(host_path("/x")))
    assert "patch" not in respond("u", steered, Endpoint.VALIDATE)["response"]
    denied = Verdict(Outcome.DENIED, allowed=False, message="no", patch=steered.patch)
    assert "patch" not in respond("u", denied, Endpoint.MUTATE)["response"]


def test_errored_follows_the_configured_stance() -> None:
    assert errored("u", "boom", allow=True)["response"]["allowed"] is True
    denied = errored("u", "boom", allow=False)["response"]
    assert denied["allowed"] is False and denied["uid"] == "u" and denied["status"]["code"] == 403


def test_warnings_escape_control_characters_the_apiserver_would_drop() -> None:
    pod = tweak(host_path("/var/log\tarchive\n"), ON_FLATCAR)
    verdict = validate(pod, Config(mode=Mode.WARN))
    warnings = respond("u", verdict, Endpoint.VALIDATE)["response"]["warnings"]
    assert all(w.isprintable() for w in warnings)
    assert any("/var/log\\tarchive\\n" in w for w in warnings)


def test_workload_update_that_keeps_the_template_is_not_judged_again() -> None:
    deployment = wrap(tweak(set_field("hostPID", True), ON_FLATCAR), "ReplicaSet")
    scaled = {**deployment, "spec": {**deployment["spec"], "replicas": 0}}
    request = replace(request_for(scaled, operation="UPDATE"), old_object=deployment)
    context: dict[str, Any] = {"config": Config(), "inventory": mixed_inventory(), "namespace_labels": {}}
    assert judge(request, endpoint=Endpoint.VALIDATE, **context).outcome is Outcome.SKIPPED
    fixed = wrap(tweak(ON_UBUNTU), "ReplicaSet")
    changed = replace(request_for(deployment, operation="UPDATE"), old_object=fixed)
    assert judge(changed, endpoint=Endpoint.VALIDATE, **context).outcome is Outcome.DENIED
    assert (
        judge(replace(changed, old_object=None), endpoint=Endpoint.VALIDATE, **context).outcome
        is Outcome.DENIED
    )


def test_read_review_keeps_the_old_object() -> None:
    review = review_for(tweak(), operation="UPDATE")
    review["request"]["oldObject"] = tweak(ON_UBUNTU)
    assert read_review(review).old_object == tweak(ON_UBUNTU)
    review["request"]["oldObject"] = "x"
    with pytest.raises(ReviewError) as err:
        read_review(review)
    assert err.value.field == "request.oldObject"


def test_ephemeral_container_is_judged_on_what_it_adds() -> None:
    running = tweak(host_path("/data", read_only=True), set_field("hostPID", True),
                    set_field("nodeName", "aks-flatcar-1234-vmss000001"))  # fmt: skip
    harmless = copy.deepcopy(running)
    harmless["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox"}]
    request = replace(request_for(harmless, operation="UPDATE", sub_resource="ephemeralcontainers"),
                      old_object=running)  # fmt: skip
    context: dict[str, Any] = {"config": Config(), "inventory": mixed_inventory(), "namespace_labels": {}}
    assert judge(request, endpoint=Endpoint.VALIDATE, **context).outcome is Outcome.CLEAN
    writer = copy.deepcopy(running)
    writer["spec"]["ephemeralContainers"] = [
        {"name": "dbg", "image": "busybox", "volumeMounts": [{"name": "host", "mountPath": "/d"}]}
    ]
    verdict = judge(replace(request, object=writer), endpoint=Endpoint.VALIDATE, **context)
    assert verdict.outcome is Outcome.DENIED and "writable in dbg" in verdict.message
    assert [f.check for f in verdict.findings] == ["host-path"]


def test_generated_names_are_shown_as_prefixes() -> None:
    pod = tweak(ON_FLATCAR, set_field("hostIPC", True))
    pod["metadata"] = {"generateName": "agent-", "namespace": "default"}
    request = read_review(review_for(pod))
    assert request.name == "agent-*"
    verdict = judge(
        request, endpoint=Endpoint.VALIDATE, config=Config(), inventory=mixed_inventory(), namespace_labels={}
    )
    assert verdict.message.startswith("Pod default/agent-* needs host access")
