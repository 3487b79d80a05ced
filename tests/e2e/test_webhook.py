"""The real webhook, called by a real kube-apiserver: what a kubectl user sees.

The session webhook (conftest `webhook`) runs in enforce mode with exemptions for group e2e-breakglass,
user e2e-exempt-user and namespace e2e-exempt, registered for pods and every workload kind with
failurePolicy Fail and kube-system excluded. Session pools: general Ubuntu (2 nodes) and Azure Linux (1),
Azure Container Linux (2) and Azure Linux OS Guard (1), the last three with `os-sku: AzureLinux` (the OS
family) as AKS may label them, so os-sku cannot tell them apart. A
pod that writes /usr/local/bin breaks on both; reading the host, or writing /var/lib, works everywhere.
Each test works in its own namespace; waits are bounded polls.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from .harness import ControlPlane, iter_audit_annotations, unique_pool_name, wait_for
from .webhook_fixture import (
    CONFIGURATION_NAME,
    EXEMPT_GROUP,
    EXEMPT_NAMESPACE,
    EXEMPT_USER,
    MUTATING_PODS,
    MUTATING_WORKLOADS,
    NOT_KUBE_SYSTEM,
    SESSION_CONFIG,
    VALIDATING_PODS,
    VALIDATING_WORKLOADS,
    SessionWebhook,
    WebhookProcess,
    register,
    unregister,
    webhook_entry,
)

NodePools = Callable[..., list[k8s.V1Node]]
Result = Any  # subprocess.CompletedProcess[str]

OS_SKU = "kubernetes.azure.com/os-sku"
REQUESTED = "kubernetes.azure.com/os-sku-requested"
IMMUTABLE_SKUS = {"Flatcar", "AzureLinuxOSGuard", "AzureContainerLinux"}
STEERED = "immutable-os.io/steered"
MODE_LABEL = "immutable-os.io/mode"
DENIED_BY = f'admission webhook "{VALIDATING_PODS}" denied the request'
WORKLOAD_DENIED_BY = f'admission webhook "{VALIDATING_WORKLOADS}" denied the request'
ONLY_IMMUTABLE = "breaks on every pool it can land on"
BREAKS = "/usr/local/bin"  # written by the pods below: /usr is read-only on ACL and OS Guard
ACL = "Azure Container Linux"
OUR_WARNING = "Warning: immutable-os: "
PLAIN_USER = "e2e-plain-user"
IMAGE = "registry.k8s.io/pause:3.10"


# ------------------------------------------------------------------------------------------------ helpers


def pod(
    name: str,
    *,
    node_selector: Mapping[str, str] | None = None,
    node_name: str | None = None,
    host_path: str | None = None,
    host_pid: bool = False,
    host_ipc: bool = False,
    host_network: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod manifest; `host_path` adds a hostPath volume mounted at /host."""
    container: dict[str, Any] = {"name": "main", "image": IMAGE}
    spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if node_name:
        spec["nodeName"] = node_name
    if host_path:
        spec["volumes"] = [{"name": "host", "hostPath": {"path": host_path}}]
        container["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]
    for key, value in (("hostPID", host_pid), ("hostIPC", host_ipc), ("hostNetwork", host_network)):
        if value:
            spec[key] = True
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def workload(kind: str, name: str, template: Mapping[str, Any]) -> dict[str, Any]:
    """A Deployment or DaemonSet whose pod template is `template` (a `pod()` manifest)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": template["spec"]},
        },
    }


def kubectl(cp: ControlPlane, namespace: str, verb: str, obj: Mapping[str, Any], *flags: str) -> Result:
    """`kubectl <verb> -n <namespace> -f -` with `obj` on stdin (verb: create or apply). JSON, not YAML:
    kubectl reads YAML 1.1, where PyYAML's unquoted `y` or `n` would be a boolean."""
    return cp.kubectl(verb, "-n", namespace, "-f", "-", *flags, input=json.dumps(obj))


def warnings_of(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def outcome(result: Result) -> str:
    """denied (by our validating webhook), warned (allowed with our warning), clean, or error."""
    if result.returncode != 0:
        denied = DENIED_BY in result.stderr or WORKLOAD_DENIED_BY in result.stderr
        return "denied" if denied else f"error: {result.stderr.strip()}"
    return "warned" if any(w.startswith(OUR_WARNING) for w in warnings_of(result)) else "clean"


def wait_for_outcome(
    cp: ControlPlane, namespace: str, obj: Mapping[str, Any], expected: str, *, timeout: float = 15.0
) -> Result:
    """Server-side dry-run creates of `obj` until the webhook answers `expected` (namespace labels reach
    the webhook through its watch, so a relabel takes a moment)."""
    seen: list[str] = []

    def probe() -> Result | None:
        result = kubectl(cp, namespace, "create", obj, "--dry-run=server")
        seen.append(outcome(result))
        return result if seen[-1] == expected else None

    result: Result = wait_for(
        probe, timeout=timeout, interval=0.1, message=lambda: f"outcome {expected}, last {seen[-1:]}"
    )
    return result


def label_namespace(core: k8s.CoreV1Api, namespace: str, mode: str | None) -> None:
    core.patch_namespace(namespace, {"metadata": {"labels": {MODE_LABEL: mode}}})


def read_pod(core: k8s.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    """The stored pod as the wire dict kubectl shows."""
    raw = core.read_namespaced_pod(name, namespace, _preload_content=False)
    data: dict[str, Any] = json.loads(raw.data)
    return data


def exists(core: k8s.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def required_terms(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return list(required.get("nodeSelectorTerms") or [])


def steering_expression(terms: list[dict[str, Any]]) -> dict[str, Any]:
    """The one NotIn expression steering added (every term must have exactly one): os-sku-requested, since
    os-sku holds the family, which general Azure Linux nodes share."""
    found = []
    for term in terms:
        ours = [
            e
            for e in term.get("matchExpressions") or []
            if e["key"] == REQUESTED and e["operator"] == "NotIn"
        ]
        assert len(ours) == 1, f"term {term} should carry exactly one {REQUESTED} NotIn"
        assert not any(e["key"] == OS_SKU for e in term.get("matchExpressions") or [])
        found.append(ours[0])
    assert found, "no nodeSelectorTerms"
    return found[0]


def general_nodes(core: k8s.CoreV1Api) -> set[str]:
    return {
        n.metadata.name
        for n in core.list_node().items
        if (n.metadata.labels or {}).get(REQUESTED) not in IMMUTABLE_SKUS
    }


def audit_annotations(cp: ControlPlane, namespace: str, name: str, verb: str = "create") -> dict[str, str]:
    """The audit annotations of the completed request `verb` on pod `name` (merged over events)."""
    events = [
        e
        for e in cp.audit_events()
        if e.get("verb") == verb
        and e.get("stage") == "ResponseComplete"
        and e.get("objectRef", {}).get("namespace") == namespace
        and e.get("objectRef", {}).get("name") == name
        and not e.get("objectRef", {}).get("subresource")
    ]
    return {key: value for _, key, value in iter_audit_annotations(events)}


@pytest.fixture
def impersonation(control_plane: ControlPlane, api_client: k8s.ApiClient, namespace: str) -> Iterator[None]:
    """RBAC so that admin can act as e2e-exempt-user, e2e-plain-user and group e2e-breakglass in the test
    namespace (pods) and read nodes (kubectl debug node/...); cluster-scoped objects are removed after."""
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    subjects = [
        {"kind": "User", "name": EXEMPT_USER, "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "User", "name": PLAIN_USER, "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "Group", "name": EXEMPT_GROUP, "apiGroup": "rbac.authorization.k8s.io"},
    ]
    cluster_name = f"{namespace}-nodes"
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pods"},
        "rules": [{"apiGroups": ["", "apps"], "resources": ["pods", "deployments"], "verbs": ["*"]}],
    })  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
        "subjects": subjects,
    })  # fmt: skip
    rbac.create_cluster_role({
        "metadata": {"name": cluster_name},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}],
    })  # fmt: skip
    rbac.create_cluster_role_binding({
        "metadata": {"name": cluster_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
        "subjects": subjects,
    })  # fmt: skip

    def authorized() -> bool:
        check = control_plane.kubectl(
            "auth",
            "can-i",
            "create",
            "pods",
            "-n",
            namespace,
            f"--as={PLAIN_USER}",
            f"--as-group={EXEMPT_GROUP}",
        )
        nodes = control_plane.kubectl("auth", "can-i", "get", "nodes", f"--as={EXEMPT_USER}")
        return check.stdout.strip() == "yes" and nodes.stdout.strip() == "yes"

    wait_for(authorized, timeout=10, message="RBAC for the impersonated identities")
    try:
        yield
    finally:
        rbac.delete_cluster_role_binding(cluster_name)
        rbac.delete_cluster_role(cluster_name)


# ------------------------------------------------------------------------------ 1. enforce denies, with why


def test_enforce_denies_a_pod_writing_usr_pinned_to_acl(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    acl = webhook.pools.acl
    manifest = pod("logs", node_selector={"agentpool": acl}, host_path=BREAKS)

    result = kubectl(control_plane, namespace, "create", manifest)

    assert result.returncode == 1, result
    stderr = result.stderr
    assert stderr.startswith("Error from server (Forbidden): error when creating"), stderr
    assert DENIED_BY in stderr
    assert f"Pod {namespace}/logs {ONLY_IMMUTABLE}: pool {acl} ({ACL}, 2 nodes)" in stderr
    assert f"writes {BREAKS}; /usr is read-only (dm-verity) on {ACL}" in stderr
    assert "spec.volumes[0].hostPath.path" in stderr
    assert "Fix: " in stderr
    assert not exists(core_v1, namespace, "logs")

    # The same answer through the official Python client.
    with pytest.raises(k8s.ApiException) as raised:
        core_v1.create_namespaced_pod(namespace, manifest)
    assert raised.value.status == 403
    status = json.loads(raised.value.body)
    assert status["reason"] == "Forbidden" and status["status"] == "Failure"
    assert status["message"].startswith(DENIED_BY + ": ")
    assert status["message"] in stderr.replace('error when creating "STDIN": ', "")
    assert not exists(core_v1, namespace, "logs")


# ------------------------------------------------------------------------------ 2. warn and audit modes


def test_warn_mode_creates_and_warns(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    acl = webhook.pools.acl
    label_namespace(core_v1, namespace, "warn")
    manifest = pod("logs", node_selector={"agentpool": acl}, host_path=BREAKS)
    wait_for_outcome(control_plane, namespace, manifest, "warned")

    result = kubectl(control_plane, namespace, "create", manifest)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pod/logs created"
    warnings = warnings_of(result)
    assert warnings and all(w.startswith(OUR_WARNING) for w in warnings), warnings
    assert any(ONLY_IMMUTABLE in w and f"pool {acl}" in w for w in warnings), warnings
    assert any("spec.volumes[0].hostPath.path" in w for w in warnings), warnings
    assert not any("immutable-os.io/mode" in w or "exemption" in w for w in warnings), "no advice to use warn"
    stored = read_pod(core_v1, namespace, "logs")
    assert stored["spec"]["nodeSelector"] == {"agentpool": acl}
    assert "affinity" not in stored["spec"]
    assert STEERED not in (stored["metadata"].get("annotations") or {})

    annotations = audit_annotations(control_plane, namespace, "logs")
    assert annotations.get(f"{VALIDATING_PODS}/decision") == "warned", annotations
    assert annotations.get(f"{VALIDATING_PODS}/mode") == "warn", annotations


def test_audit_mode_creates_silently_and_records(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    acl = webhook.pools.acl
    label_namespace(core_v1, namespace, "audit")
    manifest = pod("logs", node_selector={"agentpool": acl}, host_path=BREAKS)
    wait_for_outcome(control_plane, namespace, manifest, "clean")

    result = kubectl(control_plane, namespace, "create", manifest)

    assert result.returncode == 0 and result.stderr == "", result
    assert exists(core_v1, namespace, "logs")
    annotations = audit_annotations(control_plane, namespace, "logs")
    assert annotations.get(f"{VALIDATING_PODS}/decision") == "audited", annotations
    assert annotations.get(f"{VALIDATING_PODS}/mode") == "audit"
    assert annotations.get(f"{VALIDATING_PODS}/findings") == "host-path:spec.volumes[0].hostPath.path"
    assert annotations.get(f"{VALIDATING_PODS}/lands-on") == f"immutable:{acl}"
    assert annotations.get(f"{VALIDATING_PODS}/would") == "deny"
    # The mutating webhook was called too and changed nothing.
    mutation = json.loads(annotations["mutation.webhook.admission.k8s.io/round_0_index_0"])
    assert mutation == {"configuration": CONFIGURATION_NAME, "webhook": MUTATING_PODS, "mutated": False}


# ------------------------------------------------------------------------- 3. steering, then the scheduler


def test_unconstrained_pod_writing_usr_is_steered_and_scheduled_on_a_general_node(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    result = kubectl(control_plane, namespace, "create", pod("top", host_path=BREAKS))

    assert result.returncode == 0, result.stderr
    warnings = warnings_of(result)
    assert len(warnings) == 2 and all(w.startswith(OUR_WARNING) for w in warnings), warnings
    assert "steered away" in warnings[0]
    assert f"pool {webhook.pools.acl}" in warnings[0] and f"pool {webhook.pools.osguard}" in warnings[0]
    assert f"host-path spec.volumes[0].hostPath.path: writes {BREAKS}; /usr is read-only" in warnings[1]

    stored = read_pod(core_v1, namespace, "top")
    terms = required_terms(stored["spec"])
    assert terms == [{"matchExpressions": [steering_expression(terms)]}]
    assert set(terms[0]["matchExpressions"][0]["values"]) == {"AzureContainerLinux", "AzureLinuxOSGuard"}
    assert STEERED in stored["metadata"]["annotations"]

    def bound() -> str | None:
        node: str | None = core_v1.read_namespaced_pod("top", namespace).spec.node_name
        return node

    node = wait_for(bound, timeout=30, message="the scheduler to bind pod top")
    assert node in webhook.pools.general_nodes, node


# -------------------------------------------------------------------------------- 4. DaemonSet, end to end


def test_daemonset_writing_usr_is_steered_and_runs_only_on_general_nodes(
    webhook: SessionWebhook,
    controller_manager: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
) -> None:
    cp = controller_manager
    template = pod("agent", host_path=BREAKS)
    result = kubectl(cp, namespace, "apply", workload("DaemonSet", "agent", template))

    assert result.returncode == 0, result.stderr
    assert any("steered away" in w for w in warnings_of(result)), result.stderr
    assert any(f"DaemonSet {namespace}/agent will not run on pool {webhook.pools.acl} (2 nodes)" in w
               for w in warnings_of(result)), result.stderr  # fmt: skip
    ds = k8s.AppsV1Api(api_client).read_namespaced_daemon_set("agent", namespace, _preload_content=False)
    stored = json.loads(ds.data)
    terms = required_terms(stored["spec"]["template"]["spec"])
    assert terms == [{"matchExpressions": [steering_expression(terms)]}]
    assert STEERED in stored["spec"]["template"]["metadata"]["annotations"]

    expected = general_nodes(core_v1)
    assert webhook.pools.general_nodes <= expected

    def placed() -> set[str] | None:
        pods = core_v1.list_namespaced_pod(namespace, label_selector="app=agent").items
        nodes = {p.spec.node_name for p in pods}
        return nodes if len(pods) == len(expected) and nodes == expected else None

    wait_for(placed, timeout=60, message=lambda: f"one agent pod on each general node {sorted(expected)}")
    # The DaemonSet controller replaces the template's required node affinity terms with one matchFields
    # term naming the node (ReplaceDaemonSetPodNodeNameNodeAffinity): our NotIn decides which nodes get a
    # pod, but is not on the pods. The webhook places them on that one general node and lets them in.
    for item in core_v1.list_namespaced_pod(namespace, label_selector="app=agent").items:
        stored_pod = read_pod(core_v1, namespace, item.metadata.name)
        assert required_terms(stored_pod["spec"]) == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [item.spec.node_name]}]}
        ]
        assert STEERED in stored_pod["metadata"]["annotations"]
    events = core_v1.list_namespaced_event(namespace).items
    failed = [f"{e.reason}: {e.message}" for e in events if e.reason == "FailedCreate"]
    assert not failed
    status = k8s.AppsV1Api(api_client).read_namespaced_daemon_set_status("agent", namespace).status
    assert status.desired_number_scheduled == len(expected)
    assert status.number_misscheduled == 0


# ------------------------------------------------------------------ 5. Deployment pinned to OS Guard


def test_deployment_writing_usr_pinned_to_os_guard_is_rejected_at_apply(
    webhook: SessionWebhook, control_plane: ControlPlane, api_client: k8s.ApiClient, namespace: str
) -> None:
    pinned = {REQUESTED: "AzureLinuxOSGuard"}
    template = pod("proxy", node_selector=pinned, host_network=True, host_path=BREAKS)
    result = kubectl(control_plane, namespace, "apply", workload("Deployment", "proxy", template))

    assert result.returncode == 1, result
    assert WORKLOAD_DENIED_BY in result.stderr
    assert f"Deployment {namespace}/proxy {ONLY_IMMUTABLE}" in result.stderr
    assert f"pool {webhook.pools.osguard}" in result.stderr
    assert "spec.template.spec.volumes[0].hostPath.path" in result.stderr
    with pytest.raises(k8s.ApiException) as raised:
        k8s.AppsV1Api(api_client).read_namespaced_deployment("proxy", namespace)
    assert raised.value.status == 404


# ----------------------------------------------------------------- 6. namespace modes and exemptions


def test_namespace_label_switches_the_mode(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    manifest = pod("sniffer", node_selector={"agentpool": webhook.pools.acl}, host_path=BREAKS)

    assert outcome(kubectl(control_plane, namespace, "create", manifest)) == "denied"

    label_namespace(core_v1, namespace, "warn")
    started = time.monotonic()
    wait_for_outcome(control_plane, namespace, manifest, "warned")
    warn_seconds = time.monotonic() - started

    label_namespace(core_v1, namespace, "off")
    wait_for_outcome(control_plane, namespace, manifest, "clean")
    result = kubectl(control_plane, namespace, "create", manifest)
    assert outcome(result) == "clean" and exists(core_v1, namespace, "sniffer")
    assert STEERED not in (read_pod(core_v1, namespace, "sniffer")["metadata"].get("annotations") or {})

    label_namespace(core_v1, namespace, "enforce")
    wait_for_outcome(control_plane, namespace, pod("sniffer2", **_spec_args(manifest)), "denied")

    label_namespace(core_v1, namespace, None)  # the label removed: the config's mode, enforce
    assert (
        outcome(kubectl(control_plane, namespace, "create", pod("sniffer3", **_spec_args(manifest))))
        == "denied"
    )
    assert warn_seconds < 10


def _spec_args(manifest: Mapping[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    return {"node_selector": spec.get("nodeSelector"), "host_path": spec["volumes"][0]["hostPath"]["path"]}


def test_exempt_namespace(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api
) -> None:
    try:
        core_v1.create_namespace({"metadata": {"name": EXEMPT_NAMESPACE}})
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise
    name = f"debug-{secrets.token_hex(3)}"
    manifest = pod(name, node_selector={"agentpool": webhook.pools.acl}, host_path="/", host_pid=True)
    try:
        result = kubectl(control_plane, EXEMPT_NAMESPACE, "create", manifest)
        assert outcome(result) == "clean", result.stderr
        assert exists(core_v1, EXEMPT_NAMESPACE, name)
        annotations = audit_annotations(control_plane, EXEMPT_NAMESPACE, name)
        assert annotations.get(f"{VALIDATING_PODS}/exempt") == "namespace", annotations
    finally:
        core_v1.delete_namespaced_pod(name, EXEMPT_NAMESPACE)


def test_exempt_user_and_group_through_impersonation(
    webhook: SessionWebhook,
    control_plane: ControlPlane,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    impersonation: None,
) -> None:
    acl = webhook.pools.acl

    def create(name: str, *identity: str) -> Result:
        manifest = pod(name, node_selector={"agentpool": acl}, host_path=BREAKS)
        return kubectl(control_plane, namespace, "create", manifest, *identity)

    plain = create("plain", f"--as={PLAIN_USER}")
    assert outcome(plain) == "denied", plain.stderr
    user = create("by-user", f"--as={EXEMPT_USER}")
    assert outcome(user) == "clean", user.stderr
    # --as-group replaces the groups (system:authenticated is still added): exempt through the group.
    group = create("by-group", f"--as={PLAIN_USER}", f"--as-group={EXEMPT_GROUP}")
    assert outcome(group) == "clean", group.stderr
    assert not exists(core_v1, namespace, "plain")
    assert exists(core_v1, namespace, "by-user") and exists(core_v1, namespace, "by-group")
    assert audit_annotations(control_plane, namespace, "by-user")[f"{VALIDATING_PODS}/exempt"] == "user"
    assert audit_annotations(control_plane, namespace, "by-group")[f"{VALIDATING_PODS}/exempt"] == "group"


# ---------------------------------------------------------------------- 7. kubectl debug node/<flatcar>


def test_kubectl_debug_node_is_denied_on_acl_unless_break_glass(
    webhook: SessionWebhook,
    control_plane: ControlPlane,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    impersonation: None,
) -> None:
    node = webhook.pools.nodes[webhook.pools.acl][0]
    debug = ("debug", f"node/{node}", "--image=busybox", "-q", "--attach=false", "-n", namespace)

    denied = control_plane.kubectl(*debug, f"--as={PLAIN_USER}")
    assert denied.returncode == 1
    assert DENIED_BY in denied.stderr and ONLY_IMMUTABLE in denied.stderr
    assert f"Pod {namespace}/node-debugger-{node}-" in denied.stderr
    assert "spec.volumes[0].hostPath.path" in denied.stderr
    assert f"mounts / writable, which holds /usr, read-only (dm-verity) on {ACL}" in denied.stderr
    assert "pin it to a general-purpose node" in denied.stderr
    assert core_v1.list_namespaced_pod(namespace).items == []

    allowed = control_plane.kubectl(*debug, f"--as={PLAIN_USER}", f"--as-group={EXEMPT_GROUP}")
    assert allowed.returncode == 0 and allowed.stderr == "", allowed
    (debugger,) = core_v1.list_namespaced_pod(namespace).items
    spec = read_pod(core_v1, namespace, debugger.metadata.name)["spec"]
    assert spec["nodeName"] == node
    assert spec["hostPID"] and spec["hostIPC"] and spec["hostNetwork"]
    assert {"name": "host-root", "hostPath": {"path": "/", "type": ""}} in spec["volumes"]
    assert {"operator": "Exists"} in spec["tolerations"]
    assert "affinity" not in spec


# ------------------------------------------------------------ 8. a relabelled node flips the decision


def test_relabelled_node_flips_allowed_to_denied_without_restart(
    webhook: SessionWebhook,
    control_plane: ControlPlane,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    node_pools: NodePools,
) -> None:
    pool = unique_pool_name("migrate")
    (node,) = (n.metadata.name for n in node_pools(pool, 1, os_sku="Ubuntu"))
    first = kubectl(control_plane, namespace, "create", pod("before", node_name=node, host_path=BREAKS))
    assert outcome(first) == "clean", first.stderr

    core_v1.patch_node(node, {"metadata": {"labels": {REQUESTED: "AzureLinuxOSGuard"}}})
    started = time.monotonic()
    wait_for_outcome(control_plane, namespace, pod("after", node_name=node, host_path=BREAKS), "denied")
    assert time.monotonic() - started < 10

    second = kubectl(control_plane, namespace, "create", pod("after", node_name=node, host_path=BREAKS))
    assert outcome(second) == "denied"
    assert f"pool {pool}" in second.stderr and "OS Guard" in second.stderr
    assert "pin it to a general-purpose node" in second.stderr
    assert webhook.process.alive()


# ------------------------------------------------------------------------- 9. server-side dry run


def test_server_side_dry_run_gives_the_same_answers_and_stores_nothing(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    denied_pod = pod("logs", node_selector={"agentpool": webhook.pools.acl}, host_path=BREAKS)
    dry = kubectl(control_plane, namespace, "apply", denied_pod, "--dry-run=server")
    real = kubectl(control_plane, namespace, "apply", denied_pod)
    assert outcome(dry) == outcome(real) == "denied"
    assert dry.stderr == real.stderr

    steered = kubectl(
        control_plane, namespace, "apply", pod("top", host_path=BREAKS), "--dry-run=server", "-o", "yaml"
    )
    assert steered.returncode == 0, steered.stderr
    assert any("steered away" in w for w in warnings_of(steered))
    shown = yaml.safe_load(steered.stdout)
    terms = required_terms(shown["spec"])
    assert terms == [{"matchExpressions": [steering_expression(terms)]}]
    assert STEERED in shown["metadata"]["annotations"]
    assert core_v1.list_namespaced_pod(namespace).items == []

    # A real create of the same manifest stores exactly what the dry run showed.
    kubectl(control_plane, namespace, "apply", pod("top", host_path=BREAKS))
    stored = read_pod(core_v1, namespace, "top")
    assert required_terms(stored["spec"]) == terms
    assert stored["metadata"]["annotations"][STEERED] == shown["metadata"]["annotations"][STEERED]


# ----------------------------------------------------------------------- 10. the webhook is down


def test_webhook_down_fail_and_ignore_policies_and_kube_system(
    webhook: SessionWebhook,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
) -> None:
    token = secrets.token_hex(3)
    selector = {"matchLabels": {"e2e.immutable-os.io/down": token}}
    labels = {"e2e.immutable-os.io/down": token}
    ignoring = f"{namespace[:50]}-ignore"
    core_v1.create_namespace({"metadata": {"name": ignoring}})
    config = {
        **SESSION_CONFIG,
        "immutableNodeSelectors": [{"matchLabels": {"agentpool": webhook.pools.general}}],
    }
    down = WebhookProcess(control_plane, f"down-{token}", config)
    fail_ns = {"matchExpressions": [*NOT_KUBE_SYSTEM["matchExpressions"],
                                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ignoring]}]}  # fmt: skip
    ignore_ns = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ignoring]}]
    }
    name = f"immutable-os-e2e-down-{token}"
    configurations = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                webhook_entry("fail.down.immutable-os.io", f"{down.url}/validate", down.ca_bundle,
                              failure_policy="Fail", namespace_selector=fail_ns, object_selector=selector),
                webhook_entry("ignore.down.immutable-os.io", f"{down.url}/validate", down.ca_bundle,
                              failure_policy="Ignore", namespace_selector=ignore_ns, object_selector=selector),
            ],
        }
    ]  # fmt: skip
    kube_system_pod = f"e2e-down-{token}"
    try:
        down.start()
        register(api_client, configurations)
        # Only the second webhook treats the general pool as immutable: its denial shows it is called.
        probe = pod(
            "probe", labels=labels, node_selector={"agentpool": webhook.pools.general}, host_path=BREAKS
        )
        last: list[Result] = []

        def second_webhook_denies() -> bool:
            last[:] = [kubectl(control_plane, namespace, "create", probe, "--dry-run=server")]
            return 'admission webhook "fail.down.immutable-os.io" denied the request' in last[0].stderr

        wait_for(second_webhook_denies, timeout=15,
                 message=lambda: f"the second webhook to deny the probe; last: {last[0] if last else None}; "
                 f"its log:\n{down.logs(20)}")  # fmt: skip
        down.stop()

        # kube-system is never sent to the webhook: a pod that would be denied is created.
        result = kubectl(control_plane, "kube-system", "create",
                         pod(kube_system_pod, labels=labels, node_selector={"agentpool": webhook.pools.acl},
                             host_path=BREAKS))  # fmt: skip
        assert outcome(result) == "clean", result.stderr

        # failurePolicy Fail: an error that names the webhook call failure; nothing stored.
        failed = kubectl(control_plane, namespace, "create", pod("plain", labels=labels))
        assert failed.returncode == 1
        assert 'failed calling webhook "fail.down.immutable-os.io"' in failed.stderr, failed.stderr
        assert "Internal error occurred" in failed.stderr
        assert not exists(core_v1, namespace, "plain")

        # failurePolicy Ignore: created, and the audit log says the webhook failed open.
        ignored = kubectl(control_plane, ignoring, "create", pod("plain", labels=labels))
        assert outcome(ignored) == "clean", ignored.stderr
        assert exists(core_v1, ignoring, "plain")
        annotations = audit_annotations(control_plane, ignoring, "plain")
        failed_open = {k: v for k, v in annotations.items() if k.startswith("failed-open.validating.webhook")}
        assert list(failed_open.values()) == ["ignore.down.immutable-os.io"], annotations
    finally:
        unregister(api_client, configurations)
        down.stop()
        core_v1.delete_namespace(ignoring)
        try:
            core_v1.delete_namespaced_pod(kube_system_pod, "kube-system")
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise


# ----------------------------------------------------------------- 11. pods without host access


def test_pods_without_host_access_are_never_touched(
    webhook: SessionWebhook,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
) -> None:
    pools = webhook.pools
    manifests = [pod("anywhere")]
    manifests += [
        pod(f"on-{p}", node_selector={"agentpool": p}) for p in (pools.general, pools.acl, pools.osguard)
    ]
    manifests += [pod("on-acl-node", node_name=pools.nodes[pools.acl][0])]
    manifests += [pod("on-osguard-sku", node_selector={OS_SKU: "AzureLinuxOSGuard"})]
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        result = kubectl(control_plane, namespace, "create", manifest)
        assert result.returncode == 0 and result.stderr == "", (name, result.stderr)
        stored = read_pod(core_v1, namespace, name)
        assert "affinity" not in stored["spec"], name
        assert "annotations" not in stored["metadata"], name
        assert stored["spec"].get("nodeSelector") == manifest["spec"].get("nodeSelector"), name
        # The chart's host-access matchCondition: the apiserver never even calls the webhooks.
        annotations = audit_annotations(control_plane, namespace, name)
        assert not [k for k in annotations if k.startswith("mutation.webhook")], (name, annotations)
    called = {r.get("name") for r in webhook.process.reviews()}
    assert not called & {m["metadata"]["name"] for m in manifests}, called

    deployment = workload("Deployment", "web", pod("web", node_selector={"agentpool": pools.acl}))
    result = kubectl(control_plane, namespace, "create", deployment)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    raw = k8s.AppsV1Api(api_client).read_namespaced_deployment("web", namespace, _preload_content=False)
    template = json.loads(raw.data)["spec"]["template"]
    assert "affinity" not in template["spec"] and "annotations" not in template["metadata"]


# ------------------------------------------------------- beyond the list: what the real apiserver does


def _template_holder(kind: str, name: str, template: Mapping[str, Any]) -> dict[str, Any]:
    """`kind` with `template` as its pod template, and the path to that template's spec."""
    labels = {"app": name}
    pod_template = {"metadata": {"labels": labels}, "spec": {**template["spec"], "restartPolicy": "Always"}}
    if kind in ("Job", "CronJob"):
        pod_template["spec"]["restartPolicy"] = "Never"
        job_spec = {"template": pod_template}
        if kind == "Job":
            return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name}, "spec": job_spec}
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name},
                "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": job_spec}}}  # fmt: skip
    if kind == "ReplicationController":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name},
                "spec": {"replicas": 0, "selector": labels, "template": pod_template}}  # fmt: skip
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": pod_template}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    if kind != "DaemonSet":
        spec["replicas"] = 0
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


WORKLOAD_KINDS = [
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
]


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_every_workload_kind_is_steered_and_denied_like_a_pod(
    kind: str, webhook: SessionWebhook, control_plane: ControlPlane, namespace: str
) -> None:
    steered = kubectl(control_plane, namespace, "create",
                      _template_holder(kind, "agent", pod("x", host_path=BREAKS)), "--dry-run=server", "-o", "json")  # fmt: skip
    assert steered.returncode == 0, steered.stderr
    assert any("steered away" in w for w in warnings_of(steered)), steered.stderr
    shown = json.loads(steered.stdout)
    template = (
        shown["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else shown["spec"]["template"]
    )
    terms = required_terms(template["spec"])
    assert terms == [{"matchExpressions": [steering_expression(terms)]}]
    assert STEERED in template["metadata"]["annotations"]

    pinned = _template_holder(
        kind, "agent", pod("x", node_selector={"agentpool": webhook.pools.acl}, host_path=BREAKS)
    )
    denied = kubectl(control_plane, namespace, "create", pinned, "--dry-run=server")
    assert outcome(denied) == "denied", denied.stderr
    assert f"{kind} {namespace}/agent {ONLY_IMMUTABLE}" in denied.stderr
    field = "spec.template.spec.volumes[0].hostPath.path"
    field = f"spec.jobTemplate.{field}" if kind == "CronJob" else field
    assert field in denied.stderr


def test_steered_deployment_stays_steered_through_apply_and_its_pods_land_on_general_nodes(
    webhook: SessionWebhook,
    controller_manager: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
) -> None:
    cp = controller_manager
    apps = k8s.AppsV1Api(api_client)
    general = webhook.pools.general_nodes

    def template_of(name: str) -> dict[str, Any]:
        raw = apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        spec: dict[str, Any] = json.loads(raw.data)["spec"]["template"]
        return spec

    for name, flags in (("client-side", ()), ("server-side", ("--server-side",))):
        deployment = workload("Deployment", name, pod(name, host_path=BREAKS))
        deployment["spec"]["replicas"] = 2
        # No kubelets, so pods never become available: replace them all at once.
        deployment["spec"]["strategy"] = {"rollingUpdate": {"maxUnavailable": "100%", "maxSurge": 0}}
        first = kubectl(cp, namespace, "apply", deployment, *flags)
        assert first.returncode == 0 and any("steered away" in w for w in warnings_of(first)), first.stderr
        steered = required_terms(template_of(name)["spec"])
        # A second apply changes the template but not the constraints: no second expression, no warning.
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.k8s.io/pause:3.9"
        second = kubectl(cp, namespace, "apply", deployment, *flags)
        assert second.returncode == 0 and second.stderr == "", (name, second.stderr)
        template = template_of(name)
        assert required_terms(template["spec"]) == steered, name
        assert template["spec"]["containers"][0]["image"] == "registry.k8s.io/pause:3.9"

        def rolled_out(name: str = name) -> set[str] | None:
            pods = core_v1.list_namespaced_pod(namespace, label_selector=f"app={name}").items
            current = [p for p in pods if p.spec.containers[0].image.endswith(":3.9") and p.spec.node_name]
            return {p.spec.node_name for p in current} if len(current) == 2 else None

        nodes = wait_for(rolled_out, timeout=60, message=f"two pods of {name} with the new image bound")
        assert nodes <= general, nodes
    failed = [e.message for e in core_v1.list_namespaced_event(namespace).items if e.reason == "FailedCreate"]
    assert not failed


def test_ephemeral_debug_container_on_a_pod_without_host_access(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    node = webhook.pools.nodes[webhook.pools.acl][0]
    assert outcome(kubectl(control_plane, namespace, "create", pod("app", node_name=node))) == "clean"

    result = control_plane.kubectl(
        "debug", "pod/app", "-n", namespace, "--image=busybox", "--attach=false", "-q", "--profile=general"
    )

    assert result.returncode == 0 and result.stderr == "", result
    assert len(read_pod(core_v1, namespace, "app")["spec"]["ephemeralContainers"]) == 1
    # Without host access the chart's matchCondition keeps the apiserver from calling the webhook at all;
    # test_debug_container_is_judged_on_what_it_adds_to_a_running_pod covers the UPDATE that is sent.
    assert not [r for r in webhook.process.reviews() if r.get("name") == "app"]


def test_warning_quoting_a_host_path_with_a_control_character_reaches_the_user(
    webhook: SessionWebhook, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    """The apiserver silently drops a warning that holds a control character (net.NewWarningHeader),
    yet accepts such a hostPath: the webhook must escape it."""
    label_namespace(core_v1, namespace, "warn")
    plain = pod("plain", node_selector={"agentpool": webhook.pools.acl}, host_path="/usr/local/x")
    expected = warnings_of(wait_for_outcome(control_plane, namespace, plain, "warned"))
    tabbed = pod("tabbed", node_selector={"agentpool": webhook.pools.acl}, host_path="/usr/local\tx")

    result = kubectl(control_plane, namespace, "create", tabbed)

    assert result.returncode == 0  # the apiserver accepts the path
    assert len(warnings_of(result)) == len(expected), (expected, warnings_of(result))
    assert any("/usr/local\\tx" in w for w in warnings_of(result)), warnings_of(result)


def test_fixing_a_deployment_after_its_pool_turned_immutable_rolls_out(
    webhook: SessionWebhook,
    controller_manager: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    node_pools: NodePools,
) -> None:
    """The controllers update a workload without changing its template (the Deployment controller scales
    ReplicaSets with a full UPDATE, the garbage collector edits ownerReferences and finalizers): a
    workload the webhook would now deny must not block them, or the user's fix never rolls out and
    deleting it hangs."""
    cp = controller_manager
    apps = k8s.AppsV1Api(api_client)
    pool = unique_pool_name("legacy")
    node_pools(pool, 1, os_sku="Ubuntu")
    deployment = workload(
        "Deployment", "app", pod("app", node_selector={"agentpool": pool}, host_path=BREAKS)
    )
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    # Never bound, so that deleted pods go at once (there are no kubelets to finish a graceful delete).
    deployment["spec"]["template"]["spec"]["schedulerName"] = "e2e-unscheduled"
    assert outcome(kubectl(cp, namespace, "apply", deployment)) == "clean"

    def replica_sets() -> dict[str, int]:
        return {
            rs.metadata.name: rs.spec.replicas for rs in apps.list_namespaced_replica_set(namespace).items
        }

    (old,) = wait_for(replica_sets, timeout=30, message="the first ReplicaSet")
    # The pool migrates to OS Guard: the running Deployment is now one the webhook would deny.
    (node,) = (n.metadata.name for n in core_v1.list_node(label_selector=f"agentpool={pool}").items)
    core_v1.patch_node(node, {"metadata": {"labels": {REQUESTED: "AzureLinuxOSGuard"}}})
    wait_for_outcome(
        cp, namespace, pod("probe", node_selector={"agentpool": pool}, host_path=BREAKS), "denied"
    )

    # The user fixes it: the general pool. The Deployment itself is accepted...
    deployment["spec"]["template"]["spec"]["nodeSelector"] = {"agentpool": webhook.pools.general}
    assert outcome(kubectl(cp, namespace, "apply", deployment)) == "clean"

    # ...and the controller must scale the old ReplicaSet down (an UPDATE of it) and the new one up.
    def rolled_out() -> dict[str, int] | None:
        current = replica_sets()
        new = {name: n for name, n in current.items() if name != old}
        return current if current.get(old) == 0 and list(new.values()) == [1] else None

    wait_for(rolled_out, timeout=15, message=lambda: f"the rollout, ReplicaSets now {replica_sets()}")

    # Foreground deletion: the garbage collector removes the foregroundDeletion finalizers (UPDATEs).
    deleted = cp.kubectl("delete", "deployment/app", "-n", namespace, "--cascade=foreground", "--wait=false")
    assert deleted.returncode == 0, deleted.stderr

    def gone() -> bool:
        deployments = apps.list_namespaced_deployment(namespace).items
        return not deployments and not replica_sets()

    wait_for(gone, timeout=20, message=lambda: f"foreground deletion, ReplicaSets now {replica_sets()}")


def test_debug_container_is_judged_on_what_it_adds_to_a_running_pod(
    webhook: SessionWebhook,
    control_plane: ControlPlane,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    tmp_path: Any,
) -> None:
    """A pod that reads /usr/share on an ACL node (works): a plain debug container adds nothing and is
    allowed in enforce; one that mounts the hostPath volume writable breaks there and is not."""
    node = webhook.pools.nodes[webhook.pools.acl][0]
    reader = pod("app", node_name=node, host_path="/usr/share/app", host_pid=True)
    reader["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = True
    label_namespace(core_v1, namespace, "warn")  # hostPID degrades: warned, never denied
    assert outcome(kubectl(control_plane, namespace, "create", reader)) == "warned"
    label_namespace(core_v1, namespace, None)
    debug = ("debug", "pod/app", "-n", namespace, "--image=busybox", "--attach=false", "-q")
    plain = control_plane.kubectl(*debug, "--profile=general")
    assert plain.returncode == 0, plain.stderr
    custom = tmp_path / "mount.json"
    custom.write_text(json.dumps({"volumeMounts": [{"name": "host", "mountPath": "/host"}]}))
    writer = control_plane.kubectl(*debug, "--profile=general", f"--custom={custom}")
    assert writer.returncode != 0 and DENIED_BY in writer.stderr, writer
    assert "writes /usr/share/app; /usr is read-only (dm-verity)" in writer.stderr


# ------------------------------------------- what actually breaks: node agents by their host contract


def _cni_like(name: str) -> dict[str, Any]:
    """A CNI node agent as Calico or Cilium ship it: host network, installs its plugin into /opt/cni/bin,
    writes its config into /etc/cni/net.d, reads /lib/modules, tolerates every taint."""
    template = pod(name, host_network=True)
    spec = template["spec"]
    spec["tolerations"] = [{"operator": "Exists"}]
    spec["volumes"] = [
        {"name": "cni-bin", "hostPath": {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"}},
        {"name": "cni-conf", "hostPath": {"path": "/etc/cni/net.d"}},
        {"name": "modules", "hostPath": {"path": "/lib/modules"}},
        {"name": "xtables", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
    ]
    spec["containers"][0]["volumeMounts"] = [
        {"name": "cni-bin", "mountPath": "/host/opt/cni/bin"},
        {"name": "cni-conf", "mountPath": "/host/etc/cni/net.d"},
        {"name": "modules", "mountPath": "/lib/modules", "readOnly": True},
        {"name": "xtables", "mountPath": "/run/xtables.lock"},
    ]
    return workload("DaemonSet", name, template)


def test_a_cni_like_daemonset_is_admitted_untouched_and_runs_on_the_immutable_pools(
    webhook: SessionWebhook,
    controller_manager: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
) -> None:
    cp = controller_manager
    result = kubectl(cp, namespace, "apply", _cni_like("cni"))

    assert result.returncode == 0, result.stderr
    warnings = warnings_of(result)
    # It degrades (host network everywhere; on OS Guard, IPE flags the binaries it drops), never breaks.
    assert warnings and warnings[0].startswith(f"{OUR_WARNING}degrades on "), warnings
    assert not any("steered" in w for w in warnings), warnings
    raw = k8s.AppsV1Api(api_client).read_namespaced_daemon_set("cni", namespace, _preload_content=False)
    template = json.loads(raw.data)["spec"]["template"]
    assert "affinity" not in template["spec"] and STEERED not in (
        template["metadata"].get("annotations") or {}
    )
    events = [e for e in cp.audit_events() if e.get("stage") == "ResponseComplete"
              and e.get("objectRef", {}).get("resource") == "daemonsets" and e.get("objectRef", {}).get("name") == "cni"
              and e.get("objectRef", {}).get("namespace") == namespace]  # test_scan has a DaemonSet "cni" too  # fmt: skip
    mutations = [
        json.loads(v) for _, k, v in iter_audit_annotations(events) if k.startswith("mutation.webhook")
    ]
    assert [(m["webhook"], m["mutated"]) for m in mutations] == [(MUTATING_WORKLOADS, False)], mutations

    immutable = {*webhook.pools.nodes[webhook.pools.acl], *webhook.pools.nodes[webhook.pools.osguard]}

    def on_immutable_nodes() -> set[str] | None:
        pods = core_v1.list_namespaced_pod(namespace, label_selector="app=cni").items
        nodes = {p.spec.node_name for p in pods if p.spec.node_name}
        return nodes if immutable <= nodes else None

    wait_for(
        on_immutable_nodes,
        timeout=60,
        message=lambda: f"cni pods on every ACL and OS Guard node {sorted(immutable)}",
    )
    failed = [e.message for e in core_v1.list_namespaced_event(namespace).items if e.reason == "FailedCreate"]
    assert not failed


@pytest.mark.parametrize("mode", ["warn", "audit"])
def test_warn_and_audit_admit_a_daemonset_writing_usr_unchanged(
    mode: str, webhook: SessionWebhook, control_plane: ControlPlane, api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api, namespace: str,
) -> None:  # fmt: skip
    label_namespace(core_v1, namespace, mode)
    template = pod("agent", host_path=BREAKS)
    template["spec"]["tolerations"] = [{"operator": "Exists"}]
    daemon_set = workload("DaemonSet", "agent", template)
    probe = {**daemon_set, "metadata": {"name": "probe"}}
    wait_for_outcome(control_plane, namespace, probe, "warned" if mode == "warn" else "clean")

    result = kubectl(control_plane, namespace, "apply", daemon_set)

    assert result.returncode == 0, result.stderr
    raw = k8s.AppsV1Api(api_client).read_namespaced_daemon_set("agent", namespace, _preload_content=False)
    stored = json.loads(raw.data)["spec"]["template"]
    assert "affinity" not in stored["spec"], "warn and audit never change an object"
    assert STEERED not in (stored["metadata"].get("annotations") or {})
    events = [e for e in control_plane.audit_events() if e.get("stage") == "ResponseComplete"
              and e.get("objectRef", {}).get("resource") == "daemonsets" and e.get("objectRef", {}).get("name") == "agent"
              and e.get("objectRef", {}).get("namespace") == namespace]  # fmt: skip
    annotations = {k: v for _, k, v in iter_audit_annotations(events)}
    keys = [k for k in annotations if k.endswith("/would")]
    assert keys and annotations[keys[0]] == "steer", annotations
    if mode == "warn":
        warnings = warnings_of(result)
        assert any(
            w.startswith(f"{OUR_WARNING}would steer away from pool {webhook.pools.acl}") for w in warnings
        ), warnings
        assert any(f"DaemonSet {namespace}/agent will not run on" in w for w in warnings), warnings
    else:
        assert result.stderr == "", result.stderr
        assert annotations[f"{VALIDATING_WORKLOADS}/decision"] == "audited", annotations
