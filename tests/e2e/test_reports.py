"""The chart's periodic scan against a real kube-apiserver: the CronJob's pod spec (from `helm template` with
`reports.enabled`), run here as a process with its ServiceAccount's token, writes PolicyReports (or
openreports.io Reports) that the apiserver accepts under strict field validation, and a second run replaces
them: a report per namespace with workloads, none left where the workloads went.

The report CRDs are minimal ones written here from the published schemas (wgpolicyk8s.io/v1alpha2 as in
kubernetes-sigs/wg-policy-prototypes, openreports.io/v1alpha1 as in openreports/reports-api): the fields
this project writes, with their published types and enums, and nothing else, so an unknown or misspelt
field fails the apply.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.builders import host_path, set_field, tweak, wrap
from tests.e2e.harness import REPO_ROOT, ControlPlane, crd, installed_crds, unique_pool_name, wait_for

CHART = REPO_ROOT / "charts" / "immutable-os-webhook"
MODE = "immutable-os.io/mode"
MANAGED_BY = "app.kubernetes.io/managed-by=immutable-os-webhook"
FORMATS = {"policyreport": ("wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports", "ClusterPolicyReport"),
           "openreports": ("openreports.io", "v1alpha1", "Report", "reports", "ClusterReport")}  # fmt: skip

STRING: dict[str, Any] = {"type": "string"}
OBJECT_REFERENCE = {"type": "object", "properties": {k: STRING for k in (
    "apiVersion", "fieldPath", "kind", "name", "namespace", "resourceVersion", "uid")}}  # fmt: skip
LABEL_SELECTOR = {"type": "object", "properties": {
    "matchLabels": {"type": "object", "additionalProperties": STRING},
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"], "properties": {
        "key": STRING, "operator": STRING, "values": {"type": "array", "items": STRING}}}}}}  # fmt: skip
RESULT = {
    "type": "object",
    "required": ["policy"],
    "properties": {
        "source": STRING, "policy": STRING, "rule": STRING, "category": STRING, "message": STRING,
        "severity": {"type": "string", "enum": ["critical", "high", "low", "medium", "info"]},
        "timestamp": {"type": "object", "required": ["seconds", "nanos"], "properties": {
            "seconds": {"type": "integer", "format": "int64"}, "nanos": {"type": "integer", "format": "int32"}}},
        "result": {"type": "string", "enum": ["pass", "fail", "warn", "error", "skip"]},
        "scored": {"type": "boolean"},
        "resources": {"type": "array", "items": OBJECT_REFERENCE},
        "resourceSelector": LABEL_SELECTOR,
        "properties": {"type": "object", "additionalProperties": STRING},
    },
}  # fmt: skip
SUMMARY = {
    "type": "object",
    "properties": {k: {"type": "integer"} for k in ("pass", "fail", "warn", "error", "skip")},
}


def report_schema(group: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"}, "scope": OBJECT_REFERENCE,
        "scopeSelector": LABEL_SELECTOR, "summary": SUMMARY, "results": {"type": "array", "items": RESULT},
    }  # fmt: skip
    if group == "openreports.io":  # the newer API adds a report-level source and a configuration
        properties["source"] = STRING
        properties["configuration"] = {"type": "object", "required": ["limits"], "properties": {"limits": {
            "type": "object", "properties": {"maxResults": {"type": "integer"}, "statusFilter": {
                "type": "array", "items": {"type": "string", "enum": ["pass", "fail", "warn", "error", "skip"]}}}}}}  # fmt: skip
    return {"type": "object", "properties": properties}


@pytest.fixture(scope="module")
def report_crds(api_client: k8s.ApiClient) -> Iterator[None]:
    """Both report APIs, namespaced and cluster-scoped kinds, from the published schemas (see the module doc)."""
    bodies = [
        crd(group, k, p, report_schema(group), scope=scope, version=version)
        for group, version, kind, plural, cluster_kind in FORMATS.values()
        for scope, k, p in (("Namespaced", kind, plural), ("Cluster", cluster_kind, f"cluster{plural}"))
    ]
    with installed_crds(api_client, bodies, "report"):
        yield


def helm_template(
    assets_dir: Path, release: str, namespace: str, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    helm = assets_dir / "helm"
    if not os.access(helm, os.X_OK):
        pytest.skip(f"{helm} is missing: hack/control-plane.sh builds helm next to kube-apiserver")
    values_path = Path(f"/tmp/values-{secrets.token_hex(4)}.json")
    values_path.write_text(json.dumps(values))
    try:
        result = subprocess.run([str(helm), "template", release, str(CHART), "-n", namespace, "-f", str(values_path)],
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    finally:
        values_path.unlink()
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def token_kubeconfig(cp: ControlPlane, core: k8s.CoreV1Api, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the ServiceAccount: the identity the CronJob's pod has."""
    token = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"audiences": [], "expirationSeconds": 3600}}
    ).status.token
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
              "clusters": [{"name": "e2e", "cluster": {"server": cp.url, "certificate-authority": str(cp.ca_path)}}],
              "users": [{"name": "sa", "user": {"token": token}}],
              "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": "sa"}}]}  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def run_pod_spec(pod: Mapping[str, Any], objects: list[dict[str, Any]], namespace: str, kubeconfig: Path,
                 root: Path) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The pod's one container as a local process: its command and args, the image's interpreter replaced
    by this one; configMap volumes written from the rendered ConfigMaps into `root` at their mount paths
    (and the paths in args pointed there); env from values and the namespace fieldRef; the in-cluster
    identity through $KUBECONFIG, which `scan` reads when it is not in a pod."""
    (container,) = pod["spec"]["containers"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    local_paths = {}
    for mount in container["volumeMounts"]:
        local = local_paths[mount["mountPath"]] = root / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in config_maps[volume["configMap"]["name"]]["data"].items():
                (local / key).write_text(text)

    def local_arg(arg: str) -> str:
        flag, _, value = arg.partition("=")
        for path in sorted(local_paths, key=len, reverse=True):
            if value == path or value.startswith(path + "/"):
                return f"{flag}={local_paths[path]}{value[len(path) :]}"
        return arg

    args = [local_arg(a) for a in container["args"]]
    env = {"KUBECONFIG": str(kubeconfig), "PATH": os.environ.get("PATH", ""), "HOME": str(root)}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, variable
            env[variable["name"]] = namespace
    interpreter, *module = container["command"]
    assert re.fullmatch(r"/usr/bin/python3\.[0-9]+", interpreter), interpreter
    return subprocess.run([sys.executable, *module, *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=root, check=False)  # fmt: skip


def reports_by_namespace(
    api: k8s.ApiClient, group: str, version: str, plural: str
) -> dict[str, dict[str, Any]]:
    listed = k8s.CustomObjectsApi(api).list_cluster_custom_object(
        group, version, plural, label_selector=MANAGED_BY
    )
    return {r["metadata"]["namespace"]: r for r in listed["items"]}


@pytest.mark.parametrize("format_", sorted(FORMATS))
def test_the_reports_cron_job_writes_reports_the_apiserver_accepts_and_replaces_them(
    format_: str,
    report_crds: None,
    assets_dir: Path,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    node_pools: Callable[..., list[k8s.V1Node]],
    tmp_path: Path,
) -> None:
    group, version, kind, plural, _ = FORMATS[format_]
    token = secrets.token_hex(3)
    release, release_ns = f"rep-{token}", f"e2e-reports-{token}"
    fullname = f"{release}-immutable-os-webhook"
    flatcar = unique_pool_name("repfc")
    node_pools(unique_pool_name("repgp"), 1, os_sku="Ubuntu")
    node_pools(flatcar, 2, os_sku="Flatcar")
    objects = helm_template(
        assets_dir, release, release_ns, {"reports": {"enabled": True, "format": format_}}
    )
    setup = [o for o in objects if o["metadata"]["name"] == f"{fullname}-reports" and o["kind"] != "CronJob"]
    assert sorted(o["kind"] for o in setup) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "ServiceAccount",
    ]
    cron_job = one(objects, "CronJob")
    apps = k8s.AppsV1Api(api_client)
    spread, pinned_ns = f"e2e-rep-a-{token}", f"e2e-rep-b-{token}"
    created = [release_ns, spread, pinned_ns]
    try:
        for ns in created:  # mode off: a webhook another test registered leaves these objects alone
            core_v1.create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns, labels={MODE: "off"}))
            )
        applied = control_plane.kubectl("apply", "--server-side", "-n", release_ns, "-f", "-",
                                        input=yaml.safe_dump_all(setup))  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        dry_run = control_plane.kubectl("create", "--dry-run=server", "-n", release_ns, "-f", "-",
                                        input=yaml.safe_dump(cron_job))  # fmt: skip
        assert dry_run.returncode == 0, dry_run.stderr  # the CronJob itself is what the apiserver takes
        for name, obj in (
            ("agent", wrap(tweak(host_path("/usr/local/bin")), "DaemonSet")),
            ("web", wrap(tweak(), "Deployment")),
        ):
            obj["metadata"] = {"name": name, "namespace": spread}
            (
                apps.create_namespaced_daemon_set
                if obj["kind"] == "DaemonSet"
                else apps.create_namespaced_deployment
            )(spread, obj)
        pinned = tweak(host_path("/usr/lib/x"), set_field("nodeSelector", {"agentpool": flatcar}))
        pinned["metadata"] = {"name": "pinned", "namespace": pinned_ns}
        core_v1.create_namespaced_pod(pinned_ns, pinned)
        # A workload in the release namespace: the installed webhook never judges it, nor does the scan.
        hidden = wrap(tweak(host_path("/usr/lib/y")), "Deployment")
        hidden["metadata"] = {"name": "hidden", "namespace": release_ns}
        apps.create_namespaced_deployment(release_ns, hidden)

        for ns in (spread, pinned_ns):  # judged as any namespace is, now that the objects are stored
            core_v1.patch_namespace(ns, {"metadata": {"labels": {MODE: None}}})
        kubeconfig = token_kubeconfig(
            control_plane, core_v1, release_ns, f"{fullname}-reports", tmp_path / "sa.kubeconfig"
        )
        pod = cron_job["spec"]["jobTemplate"]["spec"]["template"]
        first = run_pod_spec(pod, objects, release_ns, kubeconfig, tmp_path / "run1")
        assert first.returncode == 0, first.stdout + first.stderr
        assert (
            first.stdout.splitlines()[0].startswith("wrote ")
            and f"{kind} ({group}/{version})" in first.stdout
        )

        reports = reports_by_namespace(api_client, group, version, plural)
        assert release_ns not in reports and {spread, pinned_ns} <= set(reports)
        spread_report, pinned_report = reports[spread], reports[pinned_ns]
        assert spread_report["metadata"]["name"] == fullname and spread_report["kind"] == kind
        results = {r["resources"][0]["name"]: r for r in spread_report["results"]}
        assert results["web"]["result"] == "pass"
        assert results["agent"]["result"] == "warn" and results["agent"]["properties"]["verdict"] == "steered"
        assert flatcar in results["agent"]["properties"]["breaksOn"].split(",")
        assert spread_report["summary"] == {"pass": 1, "fail": 0, "warn": 1, "error": 0, "skip": 0}
        (pinned_result,) = pinned_report["results"]
        assert pinned_result["result"] == "fail" and pinned_result["properties"]["verdict"] == "denied"
        assert (spread_report.get("source") == "immutable-os-webhook") == (group == "openreports.io")
        managers = {m["manager"] for m in spread_report["metadata"]["managedFields"]}
        assert managers == {"immutable-os-webhook-scan"}

        # The ServiceAccount writes only reports of its own name.
        sa = k8s.CustomObjectsApi(k8s.ApiClient(_configuration(kubeconfig)))
        other = {**spread_report, "metadata": {"name": "someone-else", "namespace": spread}}
        with pytest.raises(k8s.ApiException) as refused:
            sa.create_namespaced_custom_object(group, version, spread, plural, other)
        assert refused.value.status == 403

        # Second run: the pinned pod is gone, the web Deployment replaced by another one.
        core_v1.delete_namespaced_pod("pinned", pinned_ns, grace_period_seconds=0)
        apps.delete_namespaced_deployment("web", spread)
        api = wrap(tweak(), "Deployment")
        api["metadata"] = {"name": "api", "namespace": spread}
        apps.create_namespaced_deployment(spread, api)
        wait_for(
            lambda: not core_v1.list_namespaced_pod(pinned_ns).items, timeout=30, message="the pod to go"
        )
        second = run_pod_spec(pod, objects, release_ns, kubeconfig, tmp_path / "run2")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "deleted the" in second.stdout

        after = reports_by_namespace(api_client, group, version, plural)
        assert pinned_ns not in after and spread in after
        assert sorted(r["resources"][0]["name"] for r in after[spread]["results"]) == ["agent", "api"]
        assert after[spread]["metadata"]["uid"] == spread_report["metadata"]["uid"]  # replaced in place
        namespaced = k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(
            group, version, spread, plural
        )
        assert len(namespaced["items"]) == 1  # not accumulated
    finally:
        for ns in created:
            with contextlib.suppress(k8s.ApiException):
                core_v1.delete_namespace(ns)
        for obj in setup:
            if obj["kind"].startswith("Cluster"):
                control_plane.kubectl(
                    "delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found"
                )
        for namespace, report in reports_by_namespace(api_client, group, version, plural).items():
            with contextlib.suppress(k8s.ApiException):
                k8s.CustomObjectsApi(api_client).delete_namespaced_custom_object(
                    group, version, namespace, plural, report["metadata"]["name"]
                )


def _configuration(kubeconfig: Path) -> k8s.Configuration:
    from kubernetes import config as k8s_config

    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration
