"""`python -m webhook scan` against the real apiserver: what would happen to the workloads stored there."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import kubernetes.client as k8s

from tests.builders import host_path, set_field, tweak, wrap
from tests.e2e.harness import ControlPlane, unique_pool_name

MODE = "immutable-os.io/mode"


def scan(control_plane: ControlPlane, namespace: str, *extra: str) -> tuple[int, dict[str, str]]:
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "scan", "--kubeconfig", str(control_plane.kubeconfig_path),
         "-n", namespace, "-o", "json", *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    rows = json.loads(result.stdout)["results"]
    return result.returncode, {f"{r['kind']}/{r['name']}": r["verdict"] for r in rows}


def test_scan_reports_stored_workloads_and_what_if_pools(
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    node_pools: Callable[..., list[k8s.V1Node]],
) -> None:
    general, flatcar = unique_pool_name("scangp"), unique_pool_name("scanfc")
    node_pools(general, 1, os_sku="Ubuntu")
    node_pools(flatcar, 1, os_sku="Flatcar")
    # Store the objects as they are: a webhook registered by another test must leave them alone.
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MODE: "off"}}})
    dynamic: dict[str, Any] = {
        "agent": wrap(tweak(host_path("/usr/local/bin")), "DaemonSet"),
        "net": wrap(tweak(host_path("/lib/modules"), set_field("nodeSelector", {"agentpool": general})), "Deployment"),
        "cni": wrap(tweak(set_field("hostNetwork", True), host_path("/opt/cni/bin")), "DaemonSet"),
        "web": wrap(tweak(), "Deployment"),
    }  # fmt: skip
    apps = k8s.AppsV1Api(api_client)
    for name, obj in dynamic.items():
        obj["metadata"] = {"name": name, "namespace": namespace}
        create = (
            apps.create_namespaced_daemon_set
            if obj["kind"] == "DaemonSet"
            else apps.create_namespaced_deployment
        )
        create(namespace, obj)
    pinned = tweak(host_path("/usr/share/x"), set_field("nodeSelector", {"agentpool": flatcar}))
    pinned["metadata"] = {"name": "pinned", "namespace": namespace}
    core_v1.create_namespaced_pod(namespace, pinned)
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MODE: "enforce"}}})

    code, verdicts = scan(control_plane, namespace)
    assert verdicts == {"DaemonSet/agent": "steered", "Deployment/net": "allowed", "Deployment/web": "allowed",
                        "DaemonSet/cni": "degraded", "Pod/pinned": "denied"}  # fmt: skip
    assert code == 1
    code, what_if = scan(control_plane, namespace, "--assume-immutable", f"{general}=flatcar")
    assert what_if["Deployment/net"] == "denied"
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MODE: "warn"}}})
    code, warned = scan(control_plane, namespace)
    assert code == 0 and warned["Pod/pinned"] == "warned"


def run_scan(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "scan", "--kubeconfig", str(control_plane.kubeconfig_path), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_scan_judges_what_the_installed_webhook_sees_and_fails_on_what_it_is_told(
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    node_pools: Callable[..., list[k8s.V1Node]],
) -> None:
    node_pools(unique_pool_name("scopegp"), 1, os_sku="Ubuntu")
    node_pools(unique_pool_name("scopefc"), 1, os_sku="Flatcar")
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MODE: "off"}}})
    apps = k8s.AppsV1Api(api_client)
    agent = wrap(tweak(host_path("/usr/local/bin")), "DaemonSet")
    agent["metadata"] = {"name": "agent", "namespace": namespace}
    apps.create_namespaced_daemon_set(namespace, agent)
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {MODE: None}}})

    steered = run_scan(control_plane, "-n", namespace)
    assert steered.returncode == 0, steered.stderr  # steered passes --fail-on denied
    assert steered.stdout.splitlines()[-1].startswith(
        f"judged 1 workload in namespace {namespace}: 1 steered"
    )
    assert run_scan(control_plane, "-n", namespace, "--fail-on", "steered").returncode == 1
    # As if the webhook were installed in this namespace: it never judges its own.
    unseen = run_scan(control_plane, "-n", namespace, "--webhook-namespace", namespace)
    assert (
        unseen.returncode == 2
        and f"nothing to judge: judged 0 workloads in namespace {namespace}" in unseen.stderr
    )
    assert f"1 in {namespace}" in unseen.stderr
    included = run_scan(
        control_plane, "-n", namespace, "--webhook-namespace", namespace, "--include-system-namespaces"
    )
    assert included.returncode == 0 and "1 steered" in included.stdout

    reports = run_scan(control_plane, "-n", namespace, "-o", "openreports")
    assert reports.returncode == 0, reports.stderr
    (report,) = json.loads(reports.stdout)["items"]
    assert (report["apiVersion"], report["kind"], report["metadata"]["namespace"]) == (
        "openreports.io/v1alpha1",
        "Report",
        namespace,
    )
    assert reports.stderr.startswith("judged 1 workload")
    refused = run_scan(control_plane, "-n", namespace, "--apply")
    assert refused.returncode == 2 and refused.stderr.startswith("error: --apply: --apply writes reports")
