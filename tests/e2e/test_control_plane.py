"""Smoke tests of the end-to-end harness itself: the apiserver is the pinned release, node pools made by
the helper are Ready and labelled like AKS nodes, the scheduler binds pods, the controller-manager runs
DaemonSets, and the audit log records pods."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from .harness import ControlPlane, ControlPlaneError, pinned_kubernetes_version, unique_pool_name, wait_for

NodePools = Callable[..., list[k8s.V1Node]]


def _pod(name: str, node_selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": node_selector,
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
        },
    }


def test_apiserver_reports_the_pinned_version(control_plane: ControlPlane) -> None:
    pinned = pinned_kubernetes_version()
    assert control_plane.version["gitVersion"] == pinned
    assert control_plane.version["major"] == "1"
    assert control_plane.version["minor"] == pinned.split(".")[1]
    assert control_plane.url.startswith("https://127.0.0.1:")

    client = control_plane.kubectl("version", "--output=json", check=True)
    assert f'"gitVersion": "{pinned}"' in client.stdout


def test_node_pools_are_ready_and_labelled_like_aks(
    control_plane: ControlPlane, core_v1: k8s.CoreV1Api, node_pools: NodePools
) -> None:
    system = unique_pool_name("system")
    flatcar = unique_pool_name("flatcar")
    node_pools(system, 1, mode="System")
    node_pools(flatcar, 2, os_sku="Flatcar", taints=["os=flatcar:NoSchedule"])

    nodes = core_v1.list_node(label_selector=f"agentpool={flatcar}").items
    assert len(nodes) == 2
    for node in nodes:
        labels = node.metadata.labels
        assert labels["kubernetes.azure.com/agentpool"] == flatcar
        assert labels["kubernetes.azure.com/mode"] == "user"
        assert labels["kubernetes.azure.com/os-sku"] == "Flatcar"
        assert labels["kubernetes.azure.com/node-image-version"].startswith("AKSFlatcar-")
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.io/hostname"] == node.metadata.name
        ready = {c.type: c.status for c in node.status.conditions}
        assert ready["Ready"] == "True"
        assert node.status.node_info.os_image.startswith("Flatcar Container Linux")
        assert node.status.node_info.kernel_version.endswith("-flatcar")
        assert node.status.allocatable["pods"] == "110"
        # Exactly the requested taints: the admission-added not-ready taint is gone.
        assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [("os", "flatcar", "NoSchedule")]

    out = control_plane.kubectl("get", "nodes", "-l", f"agentpool={system}", "--no-headers", check=True)
    assert " Ready " in out.stdout


def test_scheduler_binds_a_plain_pod(
    control_plane: ControlPlane, core_v1: k8s.CoreV1Api, namespace: str, node_pools: NodePools
) -> None:
    pool = unique_pool_name("ubuntu")
    names = {n.metadata.name for n in node_pools(pool, 2)}
    core_v1.create_namespaced_pod(namespace, _pod("plain", {"agentpool": pool}))

    def bound() -> str | None:
        node: str | None = core_v1.read_namespaced_pod("plain", namespace).spec.node_name
        return node

    assert wait_for(bound, timeout=30, message="pod 'plain' to be bound") in names

    created = [
        e
        for e in control_plane.audit_events()
        if e.get("verb") == "create"
        and e.get("objectRef", {}).get("resource") == "pods"
        and e.get("objectRef", {}).get("namespace") == namespace
        and not e.get("objectRef", {}).get("subresource")
    ]
    assert created, "the audit log has no pod create event"
    assert created[-1]["level"] == "Metadata"


def test_controller_manager_runs_daemonsets(
    controller_manager: ControlPlane, api_client: k8s.ApiClient, namespace: str, node_pools: NodePools
) -> None:
    pool = unique_pool_name("azl")
    names = {n.metadata.name for n in node_pools(pool, 2, os_sku="AzureLinux")}
    labels = {"app": "agent"}
    k8s.AppsV1Api(api_client).create_namespaced_daemon_set(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {"agentpool": pool},
                        "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
                    },
                },
            },
        },
    )
    core = k8s.CoreV1Api(api_client)

    def placed() -> set[str] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=agent").items
        nodes = {p.spec.node_name for p in pods if p.spec.node_name}
        return nodes if len(pods) == len(names) and nodes == names else None

    assert wait_for(placed, timeout=60, message="one DaemonSet pod bound on each node of the pool") == names


def test_a_failed_start_reports_the_log_and_cleans_up(assets_dir: Path) -> None:
    cp = ControlPlane(assets_dir, extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError, match="no-such-flag"):
        cp.start()
    assert not any(cp.running.values())
    assert not cp.tmp_dir.exists()
