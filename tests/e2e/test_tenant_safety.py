"""Tenant safety through the real apiserver: every way a namespace tenant could get a pod that breaks on an
immutable pool onto one, tried and shown to fail.

A tenant is a user with a client certificate whose only grant is a RoleBinding to the `edit` or `admin`
ClusterRole in its own namespace (the apiserver runs RBAC). Each way below is one test: the request is
denied (by our validating webhook, by RBAC, or by the apiserver's own validation, named in each row), or the
pod is steered off the immutable pools so that the scheduler never binds it there. Two ways cannot be
blocked at admission (nodes that do not exist yet) and are strict xfails; docs/reliability.md names them.

The session webhook (conftest `webhook`, enforce) is registered with the chart's own configurations. Every
pod here carries a secret env value and a marker string in its spec; the last test reads the webhook's log
and finds neither.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .harness import (
    ControlPlane,
    create_node_pool,
    delete_node_pool,
    find_assets,
    unique_pool_name,
    wait_for,
)
from .webhook_fixture import (
    EXEMPT_GROUP,
    EXEMPT_NAMESPACE,
    EXEMPT_USER,
    VALIDATING_PODS,
    VALIDATING_WORKLOADS,
    SessionWebhook,
    api_message,
)

IMAGE = "registry.k8s.io/pause:3.10"
BREAKS = "/usr/local/bin"  # written: /usr is read-only (dm-verity) on ACL and OS Guard
READS = "/usr/share"  # mounted read-only: reading works everywhere
DENIED_BY = f'admission webhook "{VALIDATING_PODS}" denied the request'
WORKLOAD_DENIED_BY = f'admission webhook "{VALIDATING_WORKLOADS}" denied the request'
STEERED = "immutable-os.io/steered"
MODE_LABEL = "immutable-os.io/mode"
TAINT_KEY = "immutable-os-e2e/dedicated"
GATE = "immutable-os-e2e/hold"
#: In every pod's spec (an env value and container args): the webhook's log must never carry either.
SECRET = f"s3cret-{secrets.token_hex(8)}"
MARKER = f"spec-only-marker-{secrets.token_hex(8)}"


# ------------------------------------------------------------------------------------------------ tenants


@dataclass(frozen=True)
class Tenant:
    """One tenant acting in its namespace, and what the tests need to look at the result as admin."""

    user: str
    role: str
    namespace: str
    api: k8s.ApiClient
    kubeconfig: Path
    cp: ControlPlane
    admin: k8s.CoreV1Api
    webhook: SessionWebhook
    tainted: str  # an Azure Container Linux pool tainted NoSchedule (TAINT_KEY=acl)
    tainted_nodes: tuple[str, ...]
    node_pools: Callable[..., list[k8s.V1Node]]  # conftest `node_pools`: more pools, deleted after the test

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def acl(self) -> str:
        return self.webhook.pools.acl

    @property
    def acl_node(self) -> str:
        return self.webhook.pools.nodes[self.acl][0]

    @property
    def immutable_nodes(self) -> set[str]:
        pools = self.webhook.pools
        return {*pools.nodes[pools.acl], *pools.nodes[pools.osguard], *self.tainted_nodes}

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl as the tenant (its own kubeconfig: its client certificate, nothing else)."""
        binary = find_assets(self.cp.assets_dir, ["kubectl"]) / "kubectl"
        return subprocess.run([str(binary), f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
                              capture_output=True, text=True, input=input, timeout=60, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def tainted_pool(api_client: k8s.ApiClient) -> Iterator[tuple[str, tuple[str, ...]]]:
    """An Azure Container Linux pool only pods tolerating TAINT_KEY=acl:NoSchedule can land on."""
    name = unique_pool_name("acltaint")
    core = k8s.CoreV1Api(api_client)
    try:
        nodes = create_node_pool(
            core, name, 1, os_sku="AzureContainerLinux", taints=[f"{TAINT_KEY}=acl:NoSchedule"]
        )
        yield name, tuple(n.metadata.name for n in nodes)
    finally:
        delete_node_pool(core, name)


@pytest.fixture(scope="module")
def identities(controller_manager: ControlPlane) -> Iterator[dict[str, tuple[Path, k8s.ApiClient]]]:
    """A client certificate, kubeconfig and ApiClient per tenant role (the controller-manager runs: it
    aggregates the `edit` and `admin` ClusterRoles and runs the workload controllers)."""
    made: dict[str, tuple[Path, k8s.ApiClient]] = {}
    for role in ("edit", "admin"):
        path = controller_manager.write_kubeconfig(
            controller_manager.tmp_dir / f"tenant-{role}.kubeconfig", f"e2e-tenant-{role}"
        )
        made[role] = (path, k8s_config.new_client_from_config(config_file=str(path)))  # type: ignore[no-untyped-call]
    try:
        yield made
    finally:
        for _, api in made.values():
            api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def tenant_as(
    controller_manager: ControlPlane,
    api_client: k8s.ApiClient,
    webhook: SessionWebhook,
    namespace: str,
    identities: dict[str, tuple[Path, k8s.ApiClient]],
    tainted_pool: tuple[str, tuple[str, ...]],
    node_pools: Callable[..., list[k8s.V1Node]],
) -> Callable[[str], Tenant]:
    """`tenant_as(role)`: the tenant of the test's namespace holding `role` there (a RoleBinding)."""

    def bind(role: str) -> Tenant:
        user = f"e2e-tenant-{role}"
        k8s.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(namespace, {
            "metadata": {"name": f"tenant-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        })  # fmt: skip
        kubeconfig, api = identities[role]
        tenant = Tenant(user, role, namespace, api, kubeconfig, controller_manager, k8s.CoreV1Api(api_client),
                        webhook, *tainted_pool, node_pools)  # fmt: skip

        def can_create_pods() -> bool:
            review = k8s.AuthorizationV1Api(api).create_self_subject_access_review({
                "spec": {"resourceAttributes": {"namespace": namespace, "verb": "create", "resource": "pods"}}
            })  # fmt: skip
            return bool(review.status.allowed)

        wait_for(can_create_pods, timeout=15, message=f"RBAC: {user} may create pods in {namespace}")
        return tenant

    return bind


# ------------------------------------------------------------------------------------------------ helpers


def pod(
    name: str,
    *,
    host_path: str | None = BREAKS,
    read_only: bool = False,
    node_selector: Mapping[str, str] | None = None,
    node_name: str | None = None,
    gated: bool = False,
    tolerations: list[dict[str, Any]] | None = None,
    terms: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pod with the secret env value and the marker, a hostPath at /host (written unless `read_only`)."""
    container: dict[str, Any] = {
        "name": "main", "image": IMAGE, "args": ["--marker", MARKER],
        "env": [{"name": "DB_PASSWORD", "value": SECRET}],
    }  # fmt: skip
    spec: dict[str, Any] = {"containers": [container]}
    if host_path is not None:
        spec["volumes"] = [{"name": "host", "hostPath": {"path": host_path}}]
        container["volumeMounts"] = [{"name": "host", "mountPath": "/host", "readOnly": read_only}]
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if node_name:
        spec["nodeName"] = node_name
    if gated:
        spec["schedulingGates"] = [{"name": GATE}]
    if tolerations:
        spec["tolerations"] = tolerations
    if terms is not None:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}  # fmt: skip
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": "tenant-"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def tolerate(value: str = "acl", operator: str = "Equal") -> dict[str, Any]:
    return {"key": TAINT_KEY, "operator": operator, "value": value, "effect": "NoSchedule"}


def refused(call: Callable[[], Any], status: int = 403) -> str:
    """Run `call`; it must fail with `status`. The Status message."""
    with pytest.raises(k8s.ApiException) as raised:
        call()
    assert raised.value.status == status, (raised.value.status, raised.value.body)
    message = api_message(raised.value)
    print(f"  {status}: {message[:300]}")  # what the tenant saw (pytest -s)
    return message


def denied_by_webhook(call: Callable[[], Any], by: str = DENIED_BY) -> str:
    message = refused(call)
    assert message.startswith(by), message
    return message


def forbidden_by_rbac(call: Callable[[], Any], user: str) -> str:
    message = refused(call)
    assert f'User "{user}" cannot' in message and "admission webhook" not in message, message
    return message


def scheduled_off_immutable(t: Tenant, name: str, also_immutable: set[str] | None = None) -> str:
    """Wait until the scheduler decided about pod `name` (bound, or found it unschedulable); it must not be
    on an immutable node (the session's, the tainted pool's, `also_immutable`). The node ("" if none fits)."""

    def decided() -> tuple[str] | None:
        got = t.admin.read_namespaced_pod(name, t.namespace)
        if got.spec.node_name:
            return (got.spec.node_name,)
        conditions = got.status.conditions or []
        unschedulable = any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)
        return ("",) if unschedulable else None

    (node,) = wait_for(decided, timeout=30, message=f"the scheduler to decide about {name}")
    assert node not in t.immutable_nodes | (also_immutable or set()), (
        f"{name} was bound to immutable node {node}"
    )
    return node


def stays_off_immutable(t: Tenant, name: str) -> None:
    assert scheduled_off_immutable(t, name) == "", f"{name} should fit no node"


def patch(t: Tenant, name: str, ops: list[dict[str, Any]]) -> Callable[[], Any]:
    """A JSON patch of pod `name` by the tenant, to call later."""
    return lambda: t.core.patch_namespaced_pod(name, t.namespace, ops)


def ungate(t: Tenant, name: str) -> None:
    t.core.patch_namespaced_pod(name, t.namespace, [{"op": "remove", "path": "/spec/schedulingGates"}])


# ------------------------------------------------------------------------------------- the ways, one a row


def gated_then_pinned_to_the_pool_by_update(t: Tenant) -> None:
    """The issue's bypass: a gated hostPath pod that can only land on general pools (the immutable pool is
    tainted), then an UPDATE adding a toleration and a nodeSelector for that pool, then the gate removed."""
    general_only = [{"matchExpressions": [{"key": "agentpool", "operator": "In",
                                           "values": [t.webhook.pools.general, t.tainted]}]}]  # fmt: skip
    created = t.core.create_namespaced_pod(t.namespace, pod("gated", gated=True, terms=general_only))
    assert STEERED not in (created.metadata.annotations or {})  # lands on general only: nothing to steer
    retarget = [{"op": "add", "path": "/spec/tolerations/-", "value": tolerate()},
                {"op": "add", "path": "/spec/nodeSelector", "value": {"agentpool": t.tainted}}]  # fmt: skip
    assert "breaks on every pool it can land on" in denied_by_webhook(patch(t, "gated", retarget))
    # The toleration alone (the pool joins the general one): a pod that exists cannot be steered.
    message = denied_by_webhook(patch(t, "gated", retarget[:1]))
    assert "cannot be steered away (a pod that exists cannot be moved)" in message
    ungate(t, "gated")
    assert scheduled_off_immutable(t, "gated") in t.webhook.pools.nodes[t.webhook.pools.general]


def gated_steered_then_narrowed_to_the_pool(t: Tenant) -> None:
    """A gated pod steered at create; while gated, the tenant adds a nodeSelector and an affinity
    requirement for the immutable pool (the only changes Kubernetes allows a gated pod): the steering stays
    ANDed with them, so the pod fits nowhere once ungated."""
    created = t.core.create_namespaced_pod(t.namespace, pod("gated", gated=True))
    assert STEERED in (created.metadata.annotations or {})
    into_acl = {"key": "agentpool", "operator": "In", "values": [t.acl]}
    terms = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"
    t.core.patch_namespaced_pod("gated", t.namespace, [
        {"op": "add", "path": "/spec/nodeSelector", "value": {"agentpool": t.acl}},
        {"op": "add", "path": f"{terms}/0/matchExpressions/-", "value": into_acl},
    ])  # fmt: skip
    ungate(t, "gated")
    stays_off_immutable(t, "gated")


def gated_steering_removed_by_update(t: Tenant) -> None:
    """Replacing the steering affinity of a gated pod: the apiserver only lets a gated pod's placement
    narrow, so it refuses the change itself (422)."""
    t.core.create_namespaced_pod(t.namespace, pod("gated", gated=True))
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "agentpool", "operator": "In", "values": [t.acl]}]}]}}}  # fmt: skip
    message = refused(
        patch(t, "gated", [{"op": "replace", "path": "/spec/affinity", "value": affinity}]), 422
    )
    assert "nodeSelectorTerms[0]" in message and "only additions are allowed" in message, message


def pending_pod_gains_a_toleration(t: Tenant) -> None:
    """A pod pinned to the tainted immutable pool fits no node and waits, ungated; tolerations can be
    added to any pod: adding the one it lacks is an UPDATE the webhook judges like a create."""
    t.core.create_namespaced_pod(t.namespace, pod("waiting", node_selector={"agentpool": t.tainted}))
    denied_by_webhook(
        patch(t, "waiting", [{"op": "add", "path": "/spec/tolerations/-", "value": tolerate()}])
    )
    stays_off_immutable(t, "waiting")


def _running_reader(t: Tenant, name: str, path: str = READS, **kw: Any) -> None:
    """A pod reading `path` on the host (works on ACL), created as the tenant."""
    t.core.create_namespaced_pod(t.namespace, pod(name, host_path=path, read_only=True, **kw))


def _debug_container(mount: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": f"debug-{secrets.token_hex(2)}", "image": "busybox", "args": ["--marker", MARKER],
            "env": [{"name": "DB_PASSWORD", "value": SECRET}], "volumeMounts": [dict(mount)]}  # fmt: skip


def add_debug_container(t: Tenant, name: str, mount: Mapping[str, Any]) -> Callable[[], Any]:
    ops = [{"op": "add", "path": "/spec/ephemeralContainers", "value": [_debug_container(mount)]}]
    return lambda: t.core.patch_namespaced_pod_ephemeralcontainers(name, t.namespace, ops)


def may_debug(t: Tenant) -> None:
    """Neither `edit` nor `admin` may add ephemeral containers (pods/ephemeralcontainers): show it, then
    grant it as a cluster admin would for `kubectl debug`, with a Role of its own."""
    forbidden_by_rbac(
        add_debug_container(t, "reader", {"name": "host", "mountPath": "/r", "readOnly": True}), t.user
    )
    rbac = k8s.RbacAuthorizationV1Api(t.admin.api_client)
    rbac.create_namespaced_role(t.namespace, {"metadata": {"name": "debug"}, "rules": [
        {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch", "update"]}]})  # fmt: skip
    rbac.create_namespaced_role_binding(t.namespace, {
        "metadata": {"name": "debug"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "debug"},
        "subjects": [{"kind": "User", "name": t.user, "apiGroup": "rbac.authorization.k8s.io"}],
    })  # fmt: skip

    def granted() -> bool:
        attributes = {"namespace": t.namespace, "verb": "patch", "resource": "pods",
                      "subresource": "ephemeralcontainers"}  # fmt: skip
        review = k8s.AuthorizationV1Api(t.api).create_self_subject_access_review(
            {"spec": {"resourceAttributes": attributes}}
        )
        return bool(review.status.allowed)

    wait_for(granted, timeout=15, message="RBAC: the debug Role")


def ephemeral_container_mounts_a_read_only_host_path_writable(t: Tenant) -> None:
    """Ephemeral containers cannot add volumes, but can mount the pod's: the read-only hostPath of a pod
    on an ACL node, mounted writable by a debug container (pods/ephemeralcontainers)."""
    _running_reader(t, "reader", node_name=t.acl_node)
    may_debug(t)
    message = denied_by_webhook(add_debug_container(t, "reader", {"name": "host", "mountPath": "/w"}))
    assert f"writes {READS}; /usr is read-only" in message, message
    # Read-only, the same debug container is fine: it adds nothing that breaks.
    add_debug_container(t, "reader", {"name": "host", "mountPath": "/r", "readOnly": True})()


def ephemeral_container_writes_a_sub_path(t: Tenant) -> None:
    """A pod reading all of /usr; a debug container mounting only its subPath local/bin, writable: the
    apiserver refuses subPath in an ephemeral container (422), so only whole volumes can be remounted."""
    _running_reader(t, "reader", "/usr", node_name=t.acl_node)
    may_debug(t)
    mount = {"name": "host", "mountPath": "/w", "subPath": "local/bin"}
    message = refused(add_debug_container(t, "reader", mount), 422)
    assert "subPath" in message and "Ephemeral Container" in message, message


def ephemeral_container_on_a_gated_pod(t: Tenant) -> None:
    """A gated reader not yet scheduled can still land on ACL: the writable debug mount is denied (it
    cannot be steered any more)."""
    _running_reader(t, "reader", gated=True)
    may_debug(t)
    denied_by_webhook(add_debug_container(t, "reader", {"name": "host", "mountPath": "/w"}))


def runtime_class_that_does_not_exist(t: Tenant) -> None:
    """`exemptions.runtimeClasses` keys on runtimeClassName, which the tenant writes; but the apiserver's
    RuntimeClass admission refuses a pod naming a RuntimeClass that does not exist, and only cluster
    admins create RuntimeClasses."""
    manifest = pod("sandboxed", node_selector={"agentpool": t.acl})
    manifest["spec"]["runtimeClassName"] = f"e2e-sandboxed-{secrets.token_hex(2)}"
    message = refused(lambda: t.core.create_namespaced_pod(t.namespace, manifest))
    assert "RuntimeClass" in message and "not found" in message, message
    runtime_class = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                     "metadata": {"name": manifest["spec"]["runtimeClassName"]}, "handler": "runc"}  # fmt: skip
    forbidden_by_rbac(lambda: k8s.NodeV1Api(t.api).create_runtime_class(runtime_class), t.user)


def namespace_mode_label(t: Tenant) -> None:
    """The mode label on its own namespace (enforce -> off): namespaces are cluster-scoped, and neither
    `edit` nor `admin` may update them."""
    label = {"metadata": {"labels": {MODE_LABEL: "off"}}}
    forbidden_by_rbac(lambda: t.core.patch_namespace(t.namespace, label), t.user)
    new = {"metadata": {"name": f"{t.namespace}-x", "labels": {MODE_LABEL: "off"}}}
    forbidden_by_rbac(lambda: t.core.create_namespace(new), t.user)
    assert MODE_LABEL not in (t.admin.read_namespace(t.namespace).metadata.labels or {})


def namespaces_the_webhook_does_not_judge(t: Tenant) -> None:
    """kube-system (never judged) and the exempt namespace: the tenant has no grant there."""
    for where in ("kube-system", EXEMPT_NAMESPACE):
        forbidden_by_rbac(
            lambda w=where: t.core.create_namespaced_pod(w, pod("x", node_name=t.acl_node)), t.user
        )


def exempt_identity_by_impersonation(t: Tenant) -> None:
    """Impersonate-Group of the exempt group, Impersonate-User of the exempt user (kubectl --as-group,
    --as): `edit` and `admin` hold no impersonate verb."""
    for headers in ({"Impersonate-User": t.user, "Impersonate-Group": EXEMPT_GROUP},
                    {"Impersonate-User": EXEMPT_USER}):  # fmt: skip
        api = k8s_config.new_client_from_config(config_file=str(t.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            for name, value in headers.items():
                api.set_default_header(name, value)
            create = k8s.CoreV1Api(api).create_namespaced_pod
            message = refused(lambda c=create: c(t.namespace, pod("x", node_name=t.acl_node)))
            assert f'User "{t.user}" cannot impersonate' in message, message
        finally:
            api.close()  # type: ignore[no-untyped-call]


def relabel_or_bind_to_an_immutable_node(t: Tenant) -> None:
    """Make the immutable node look general, or bind a pending pod to it past the scheduler (pods/binding):
    both are outside `edit` and `admin`."""
    relabel = {"metadata": {"labels": {"kubernetes.azure.com/os-sku-requested": "Ubuntu"}}}
    forbidden_by_rbac(lambda: t.core.patch_node(t.acl_node, relabel), t.user)
    t.core.create_namespaced_pod(t.namespace, pod("waiting", node_selector={"agentpool": t.tainted}))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "waiting"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": t.tainted_nodes[0]}}  # fmt: skip
    forbidden_by_rbac(
        lambda: t.core.create_namespaced_pod_binding("waiting", t.namespace, binding, _preload_content=False),
        t.user,
    )


def generate_name(t: Tenant) -> None:
    """generateName instead of a name: pinned, denied; unpinned, steered and scheduled on a general node."""
    denied_by_webhook(
        lambda: t.core.create_namespaced_pod(t.namespace, pod("", node_selector={"agentpool": t.acl}))
    )
    created = t.core.create_namespaced_pod(t.namespace, pod(""))
    assert STEERED in (created.metadata.annotations or {})
    assert scheduled_off_immutable(t, created.metadata.name)


def node_name_on_create(t: Tenant) -> None:
    """nodeName set on create bypasses the scheduler (and NoSchedule taints)."""
    for node in (t.acl_node, t.tainted_nodes[0]):
        denied_by_webhook(
            lambda n=node: t.core.create_namespaced_pod(t.namespace, pod("pinned", node_name=n))
        )


def match_fields_node_name(t: Tenant) -> None:
    """Required node affinity by matchFields metadata.name (how the DaemonSet controller pins its pods)."""
    by_name = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [t.acl_node]}]}]
    denied_by_webhook(lambda: t.core.create_namespaced_pod(t.namespace, pod("by-name", terms=by_name)))


def match_fields_other_than_node_name(t: Tenant) -> None:
    """matchFields on a field other than metadata.name reaches the mutating webhook before the apiserver's
    validation: it is refused there as a spec that cannot be judged (400, naming the field), not sent down
    the internal-error path (which would admit it under onInternalError: allow)."""
    by_label = [{"matchFields": [{"key": "metadata.labels", "operator": "In", "values": [t.acl]}]}]
    message = refused(lambda: t.core.create_namespaced_pod(t.namespace, pod("by-field", terms=by_label)), 400)
    assert message.startswith('admission webhook "steer-pods.immutable-os.io" denied the request'), message
    assert "cannot be judged" in message and "matchFields[0]" in message, message
    failures = [e for e in t.webhook.process.log_entries("review failed") if "matchFields" in json.dumps(e)]
    assert failures == []


def toleration_exists_without_key(t: Tenant) -> None:
    """`operator: Exists` with no key tolerates every taint: pinned to the tainted pool, denied; unpinned,
    steered off both immutable pools."""
    everything = [{"operator": "Exists"}]
    denied_by_webhook(lambda: t.core.create_namespaced_pod(
        t.namespace, pod("pinned", tolerations=everything, node_selector={"agentpool": t.tainted})))  # fmt: skip
    created = t.core.create_namespaced_pod(t.namespace, pod("free", tolerations=everything))
    assert STEERED in (created.metadata.annotations or {})
    assert scheduled_off_immutable(t, "free")


def toleration_with_a_comparison_operator(t: Tenant) -> None:
    """The alpha toleration operators Lt/Gt (TaintTolerationComparisonOperators): without the feature gate
    the apiserver refuses them (422); the webhook, which may see them first (mutation runs before
    validation), judges an operator it does not know as tolerating the taints of its key."""
    lt = {"key": TAINT_KEY, "operator": "Lt", "value": "5", "effect": "NoSchedule"}
    manifest = pod("compare", tolerations=[lt], node_selector={"agentpool": t.tainted})
    with pytest.raises(k8s.ApiException) as raised:
        t.core.create_namespaced_pod(t.namespace, manifest)
    message = api_message(raised.value)
    print(f"  {raised.value.status}: {message[:300]}")
    if raised.value.status == 422:
        assert "operator" in message and "Lt" in message, message
    else:  # the gate is on in this apiserver: then our webhook must deny it
        assert raised.value.status == 403 and message.startswith(DENIED_BY), message


def unknown_affinity_operator(t: Tenant) -> None:
    """An operator no Kubernetes knows, in required node affinity: the mutating webhook sees it before
    validation and must not fail on it (an error would be a 500 or an allow); the apiserver then refuses it."""
    terms = [{"matchExpressions": [{"key": "agentpool", "operator": "Near", "values": [t.acl]}]}]
    message = refused(lambda: t.core.create_namespaced_pod(t.namespace, pod("near", terms=terms)), 422)
    assert "Near" in message and "admission webhook" not in message, message


def _workload(kind: str, template: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(api group path, manifest) of a `kind` whose pods are `template`."""
    labels = {"app": "w"}
    pod_template = {"metadata": {"labels": labels}, "spec": template["spec"]}
    if kind in ("Job", "CronJob"):
        pod_template["spec"] = {**template["spec"], "restartPolicy": "Never"}
        job = {"template": pod_template}
        spec = job if kind == "Job" else {"schedule": "*/5 * * * *", "jobTemplate": {"spec": job}}
        return "batch/v1", {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": "w"}, "spec": spec}
    spec = {"selector": {"matchLabels": labels}, "template": pod_template}
    if kind == "StatefulSet":
        spec["serviceName"] = "w"
    return "apps/v1", {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"}, "spec": spec}


def workload_pinned_to_the_pool(kind: str) -> Callable[[Tenant], None]:
    def way(t: Tenant) -> None:
        _, manifest = _workload(kind, pod("w", node_selector={"agentpool": t.acl}))
        result = t.kubectl("create", "-f", "-", input=json.dumps(manifest))
        assert result.returncode != 0 and WORKLOAD_DENIED_BY in result.stderr, result

    way.__doc__ = f"A {kind} whose pods write {BREAKS} pinned to ACL: denied at the {kind} itself."
    return way


def deployment_retargeted_by_update(t: Tenant) -> None:
    """A Deployment on the general pool (works), then an update moving its template to ACL: a changed
    template is judged again."""
    _, manifest = _workload("Deployment", pod("w", node_selector={"agentpool": t.webhook.pools.general}))
    manifest["spec"]["replicas"] = 0
    assert t.kubectl("create", "-f", "-", input=json.dumps(manifest)).returncode == 0
    manifest["spec"]["template"]["spec"]["nodeSelector"] = {"agentpool": t.acl}
    result = t.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    assert result.returncode != 0 and WORKLOAD_DENIED_BY in result.stderr, result


def deployment_steered_pods_land_on_general_nodes(t: Tenant) -> None:
    """An unpinned Deployment is steered; its pods, created by the ReplicaSet controller (another identity)
    and judged again, are scheduled on general nodes only."""
    _, manifest = _workload("Deployment", pod("w"))
    manifest["spec"]["replicas"] = 2
    result = t.kubectl("create", "-f", "-", input=json.dumps(manifest))
    assert result.returncode == 0 and "steered away from" in result.stderr, result

    def two_pods() -> list[str] | None:
        names = [
            p.metadata.name for p in t.admin.list_namespaced_pod(t.namespace, label_selector="app=w").items
        ]
        return names if len(names) == 2 else None

    for name in wait_for(two_pods, timeout=30, message="the Deployment's two pods"):
        assert scheduled_off_immutable(t, name)


def _denied_or_steered(t: Tenant, manifest: Mapping[str, Any]) -> bool:
    """Create `manifest`: True if our webhook denied it, False if it was admitted steered; an assertion
    error if it was admitted unsteered."""
    try:
        created = t.core.create_namespaced_pod(t.namespace, manifest)
    except k8s.ApiException as exc:
        assert exc.status == 403 and api_message(exc).startswith(DENIED_BY), api_message(exc)
        return True
    assert STEERED in (created.metadata.annotations or {}), f"admitted unjudged: {created.metadata.name}"
    return False


def pod_pinned_to_a_node_that_does_not_exist_yet(t: Tenant) -> None:
    """nodeName of a node not registered yet: no node matches, so the webhook judges it against the nodes
    that could come (label evidence) and steers it off every immutable profile's labels; the kubelet of an
    immutable node of that name would refuse it (node affinity)."""
    _denied_or_steered(t, pod("early", node_name=f"aks-{unique_pool_name('later')}-12345678-vmss000000"))


def pod_pinned_to_a_pool_with_no_nodes_yet(t: Tenant) -> None:
    """nodeSelector of a pool scaled to zero (a cluster autoscaler scales it up for this very pod): judged
    against the nodes that could come, so steered off every immutable profile's labels; when the pool's
    first node registers as Azure Container Linux, the scheduler does not bind the pod there."""
    later = unique_pool_name("later")
    try:
        t.core.create_namespaced_pod(t.namespace, pod("early", node_selector={"agentpool": later}))
    except k8s.ApiException as exc:
        assert exc.status == 403 and api_message(exc).startswith(DENIED_BY), api_message(exc)
        return
    nodes = t.node_pools(later, 1, os_sku="AzureContainerLinux")
    scheduled_off_immutable(t, "early", {n.metadata.name for n in nodes})


@dataclass(frozen=True)
class Way:
    id: str
    role: str
    attempt: Callable[[Tenant], None]
    limit: str = ""  # why it cannot be blocked at admission (a strict xfail)


WAYS = [
    Way("gated-pod-then-update-adds-toleration-and-nodeSelector", "edit", gated_then_pinned_to_the_pool_by_update),
    Way("gated-steered-pod-narrowed-to-the-pool-by-update", "edit", gated_steered_then_narrowed_to_the_pool),
    Way("gated-pod-update-replaces-the-steering", "edit", gated_steering_removed_by_update),
    Way("pending-pod-update-adds-a-toleration", "edit", pending_pod_gains_a_toleration),
    Way("ephemeral-container-mounts-host-path-writable", "edit", ephemeral_container_mounts_a_read_only_host_path_writable),
    Way("ephemeral-container-writable-sub-path", "edit", ephemeral_container_writes_a_sub_path),
    Way("ephemeral-container-on-a-gated-pod", "admin", ephemeral_container_on_a_gated_pod),
    Way("runtime-class-the-tenant-names", "edit", runtime_class_that_does_not_exist),
    Way("namespace-mode-label-as-edit", "edit", namespace_mode_label),
    Way("namespace-mode-label-as-admin", "admin", namespace_mode_label),
    Way("namespaces-the-webhook-does-not-judge", "admin", namespaces_the_webhook_does_not_judge),
    Way("impersonate-the-exempt-group-or-user", "admin", exempt_identity_by_impersonation),
    Way("relabel-or-bind-to-an-immutable-node", "admin", relabel_or_bind_to_an_immutable_node),
    Way("generate-name", "edit", generate_name),
    Way("node-name-on-create", "edit", node_name_on_create),
    Way("affinity-match-fields", "edit", match_fields_node_name),
    Way("affinity-match-fields-other-than-node-name", "edit", match_fields_other_than_node_name),
    Way("toleration-exists-without-key", "edit", toleration_exists_without_key),
    Way("toleration-operator-lt", "edit", toleration_with_a_comparison_operator),
    Way("affinity-unknown-operator", "edit", unknown_affinity_operator),
    *(Way(f"workload-{k.lower()}", "edit", workload_pinned_to_the_pool(k))
      for k in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob")),
    Way("workload-template-retargeted-by-update", "edit", deployment_retargeted_by_update),
    Way("workload-steered-pods-by-the-controller", "edit", deployment_steered_pods_land_on_general_nodes),
    Way("node-name-of-a-node-not-registered-yet", "edit", pod_pinned_to_a_node_that_does_not_exist_yet),
    Way("node-selector-of-a-pool-with-no-nodes-yet", "edit", pod_pinned_to_a_pool_with_no_nodes_yet),
]  # fmt: skip


@pytest.mark.parametrize(
    "way",
    [pytest.param(w, id=w.id, marks=[pytest.mark.xfail(strict=True, reason=w.limit)] if w.limit else [])
     for w in WAYS],
)  # fmt: skip
def test_a_tenant_cannot_get_a_breaking_pod_onto_an_immutable_pool(
    way: Way, tenant_as: Callable[[str], Tenant]
) -> None:
    way.attempt(tenant_as(way.role))


def test_the_webhook_log_never_carries_a_spec_or_an_env_value(
    tenant_as: Callable[[str], Tenant], webhook: SessionWebhook
) -> None:
    """Every review above (and these: denied, steered, errored by the apiserver, an ephemeral container)
    went through the session webhook, which logs at debug; neither the secret env value nor the spec
    marker is in its log, while the reviews of these pods are."""
    t = tenant_as("edit")
    denied_by_webhook(lambda: t.core.create_namespaced_pod(t.namespace, pod("denied", node_name=t.acl_node)))
    t.core.create_namespaced_pod(t.namespace, pod("steered"))
    _running_reader(t, "reader", node_name=t.acl_node)
    may_debug(t)
    denied_by_webhook(add_debug_container(t, "reader", {"name": "host", "mountPath": "/w"}))

    log = webhook.process.log_path.read_text(errors="replace")
    reviewed = {e.get("name") for e in webhook.process.reviews() if e.get("namespace") == t.namespace}
    assert {"denied", "steered", "reader"} <= reviewed, reviewed
    assert SECRET not in log
    assert MARKER not in log
