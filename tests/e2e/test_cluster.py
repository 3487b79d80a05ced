"""The cluster shell through a real kube-apiserver: the node labeller. (The watch under faults, an apiserver
outage included, is test_outage.py.)

The test runs on a control plane of its own (etcd + kube-apiserver, no scheduler): the labeller writes to
every node, which must not disturb the session's webhook and pools. Waits are bounded polls.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests import aks
from webhook.adapters.cluster import FIELD_MANAGER
from webhook.core.config import PROFILE_LABEL

from .harness import REPO_ROOT, ControlPlane, admin, create_node_pool, unique_pool_name, wait_for
from .webhook_fixture import WebhookProcess

OS_SKU = "kubernetes.azure.com/os-sku"
IMAGE_VERSION = "kubernetes.azure.com/node-image-version"
CHART = REPO_ROOT / "charts" / "immutable-os-webhook"
APPLY_PATCH = "application/apply-patch+yaml"


# ------------------------------------------------------------------------------------------ the labeller


def chart_cluster_role(assets_dir: Path, home: Path) -> dict[str, Any]:
    """The ClusterRole the chart renders with labeller.enabled=true."""
    helm = assets_dir / "helm"
    if not os.access(helm, os.X_OK):
        message = f"{helm} is missing: hack/control-plane.sh builds helm next to kube-apiserver"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    env = {**os.environ, **{f"HELM_{d}_HOME": str(home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}
    rendered = subprocess.run(
        [str(helm), "template", "iow", str(CHART), "--set", "labeller.enabled=true",
         "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    ).stdout  # fmt: skip
    (role,) = (d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ClusterRole")
    return dict(role)


def labeller_identity(cp: ControlPlane, assets_dir: Path) -> Path:
    """A kubeconfig for a user bound to exactly the chart's ClusterRole (with the labeller)."""
    user = "e2e-labeller"
    rules = chart_cluster_role(assets_dir, cp.tmp_dir / "helm-labeller")["rules"]
    rbac = k8s.RbacAuthorizationV1Api(cp.api_client())
    rbac.create_cluster_role({"metadata": {"name": user}, "rules": rules})
    rbac.create_cluster_role_binding({
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
    })  # fmt: skip
    return cp.write_kubeconfig(cp.tmp_dir / f"{user}.kubeconfig", user)


def apply_label(core: k8s.CoreV1Api, node: str, value: str, manager: str) -> k8s.V1Node:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {PROFILE_LABEL: value}}}
    result: k8s.V1Node = core.patch_node(
        node, body, field_manager=manager, force=False, _content_type=APPLY_PATCH
    )
    return result


def marker(core: k8s.CoreV1Api, node: str) -> str | None:
    return (core.read_node(node).metadata.labels or {}).get(PROFILE_LABEL)


def label_owners(core: k8s.CoreV1Api, node: str) -> set[str]:
    """The field managers that own the node's profile label."""
    owners = set()
    for entry in core.read_node(node).metadata.managed_fields or []:
        labels = ((entry.fields_v1 or {}).get("f:metadata") or {}).get("f:labels") or {}
        if f"f:{PROFILE_LABEL}" in labels:
            owners.add(entry.manager)
    return owners


def names(nodes: list[k8s.V1Node]) -> list[str]:
    return [n.metadata.name for n in nodes]


def test_the_labeller_marks_immutable_nodes_by_server_side_apply_and_leaves_the_rest(
    plane: ControlPlane, assets_dir: Path
) -> None:
    core = admin(plane)
    (general,) = names(create_node_pool(core, unique_pool_name("general"), 1))
    (flatcar,) = names(create_node_pool(core, unique_pool_name("flatcar"), 1, os_sku="Flatcar"))
    guard, guard_kept = names(
        create_node_pool(core, unique_pool_name("osguard"), 2, os_sku="AzureLinuxOSGuard")
    )
    (claimed,) = names(create_node_pool(core, unique_pool_name("claimed"), 1, os_sku="Flatcar"))
    apply_label(core, claimed, "corp-flatcar", manager="platform-team")
    expected = {flatcar: "flatcar", guard: "azure-linux-osguard", guard_kept: "azure-linux-osguard"}

    hook = WebhookProcess(plane, "labeller", {"mode": "enforce"}, kubeconfig=labeller_identity(plane, assets_dir),
                          extra_args=["--label-nodes"])  # fmt: skip
    started = time.monotonic()
    hook.start()
    try:
        wait_for(lambda: {n: marker(core, n) for n in expected} == expected, timeout=15,
                 message=lambda: f"the immutable nodes to be labelled; log:\n{hook.logs(30)}")  # fmt: skip
        print(
            f"\nexisting immutable nodes labelled {time.monotonic() - started:.2f}s after the webhook started"
        )
        assert all(label_owners(core, n) == {FIELD_MANAGER} for n in expected)

        # Someone else's label with another value: one conflict, logged once, and the label stays theirs.
        def conflicts() -> list[dict[str, Any]]:
            return [e for e in hook.log_entries("node label left to its owner") if e.get("node") == claimed]

        wait_for(lambda: len(conflicts()) == 1, timeout=10, message="the conflict to be logged")
        core.patch_node(claimed, {"metadata": {"annotations": {"e2e.immutable-os.io/touched": "yes"}}})

        # A pool that joins later is labelled from the watch. Its node comes after every change above.
        late_pool = unique_pool_name("late")
        added = time.monotonic()
        (late,) = names(create_node_pool(core, late_pool, 1, os_sku="AzureContainerLinux"))
        wait_for(lambda: marker(core, late) == "azure-container-linux", timeout=10,
                 message=lambda: f"the late node to be labelled; log:\n{hook.logs(30)}")  # fmt: skip
        print(f"a node that joined later was labelled {time.monotonic() - added:.2f}s after its create began")

        assert (marker(core, claimed), label_owners(core, claimed)) == ("corp-flatcar", {"platform-team"})
        assert len(conflicts()) == 1
        assert marker(core, general) is None and label_owners(core, general) == set()

        # An OS Guard node relabelled as Ubuntu loses the label we set; its pool mate keeps it.
        ubuntu = {k: v for k, v in aks.labels("x", "Ubuntu").items() if k.startswith((OS_SKU, IMAGE_VERSION))}
        core.patch_node(guard, {"metadata": {"labels": ubuntu}})
        wait_for(lambda: marker(core, guard) is None, timeout=10,
                 message=lambda: f"the label to be removed from {guard}; log:\n{hook.logs(30)}")  # fmt: skip
        assert label_owners(core, guard) == set()
        assert marker(core, guard_kept) == "azure-linux-osguard"

        # Another replica applying the same label under the same field manager changes nothing.
        before = core.read_node(guard_kept).metadata.resource_version
        after = apply_label(core, guard_kept, "azure-linux-osguard", manager=FIELD_MANAGER)
        assert after.metadata.resource_version == before
        assert hook.alive()
    finally:
        hook.stop()
