"""The Helm chart against a real kube-apiserver.

- `helm template` output in every certificate mode is accepted by server-side dry-run (strict field
  validation), and the webhook's own pod passes the `restricted` Pod Security level.
- The chart-made configurations, applied for real with the URL option (the webhook runs here as
  `python -m webhook serve` on 127.0.0.1 with the chart's ConfigMap config, deployment disabled), judge
  the kind demo manifests (hack/kind/demo/) as demo.sh shows them: a denial, a warning, a steered pod;
  kube-system and the release namespace are never sent to the webhook.
- `helm install` in generate mode, `helm upgrade` keeps the generated CA (lookup), a rotation keeps old
  and new CA in the caBundle until the next upgrade, `helm uninstall` removes the configurations.

Every chart-made configuration here is scoped to the test's namespaces by a namespace label
(`webhook.namespaceSelector`), so nothing else in the session is judged by it, and is deleted afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import secrets
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client as k8s

from .conftest import _in_ci
from .harness import (
    LOOPBACK,
    REPO_ROOT,
    ControlPlane,
    crd,
    installed_crds,
    iter_audit_annotations,
    unique_pool_name,
    wait_for,
)
from .webhook_fixture import WebhookProcess

CHART = REPO_ROOT / "charts" / "immutable-os-webhook"
KIND = REPO_ROOT / "hack" / "kind"
DEMO = KIND / "demo"
SCOPE_LABEL = "e2e-chart"
OS_SKU = "kubernetes.azure.com/os-sku"
IMMUTABLE_SKUS = {"Flatcar", "AzureLinuxOSGuard", "AzureContainerLinux"}
VALIDATING_PODS = "pods.immutable-os.io"
VALIDATING_WORKLOADS = "workloads.immutable-os.io"
MUTATING_PODS = "steer-pods.immutable-os.io"
ONLY_IMMUTABLE = "breaks on every pool it can land on"
REQUESTED = "kubernetes.azure.com/os-sku-requested"

NodePools = Callable[..., list[k8s.V1Node]]


# --------------------------------------------------------------------------------------------- helpers


@dataclass
class Helm:
    """helm against the test apiserver, with its own config, cache and data directories."""

    binary: Path
    control_plane: ControlPlane
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.control_plane.kubeconfig_path),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, env=env, check=False
        )
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def values_file(self, values: Mapping[str, Any]) -> str:
        path = self.home / f"values-{secrets.token_hex(4)}.yaml"
        # JSON, which is YAML with every string quoted: helm would read an unquoted "1369e4" as a number.
        path.write_text(json.dumps(values))
        return str(path)

    def template(self, release: str, namespace: str, values: Mapping[str, Any]) -> str:
        return self.run(
            "template", release, str(CHART), "-n", namespace, "-f", self.values_file(values)
        ).stdout


@pytest.fixture(scope="module")
def helm(assets_dir: Path, control_plane: ControlPlane) -> Helm:
    binary = assets_dir / "helm"
    if not os.access(binary, os.X_OK):
        message = f"{binary} is missing: hack/control-plane.sh builds helm next to kube-apiserver"
        if _in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    home = control_plane.tmp_dir / f"helm-{secrets.token_hex(3)}"
    home.mkdir()
    return Helm(binary, control_plane, home)


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def scoped(token: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Values whose webhooks judge only namespaces labelled e2e-chart=<token>."""
    return merge({"webhook": {"namespaceSelector": {"matchLabels": {SCOPE_LABEL: token}}}}, values or {})


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubectl_ok(cp: ControlPlane, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    result = cp.kubectl(*args, input=input)
    assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def create_namespace(core: k8s.CoreV1Api, name: str, labels: Mapping[str, str] | None = None) -> str:
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=dict(labels or {}))))
    return name


def delete_namespace(core: k8s.CoreV1Api, name: str) -> None:
    with contextlib.suppress(k8s.ApiException):
        core.delete_namespace(name)


def delete_release_objects(cp: ControlPlane, release: str) -> None:
    """Cluster-scoped leftovers of a rendered-and-applied release (namespaced ones go with the namespace)."""
    cp.kubectl(
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration,clusterrole,clusterrolebinding",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "--ignore-not-found",
        "--wait=true",
    )


def configurations(api: k8s.ApiClient, name: str) -> list[Any]:
    admission = k8s.AdmissionregistrationV1Api(api)
    found = [c for c in admission.list_mutating_webhook_configuration().items if c.metadata.name == name]
    found += [c for c in admission.list_validating_webhook_configuration().items if c.metadata.name == name]
    return found


def ca_bundles(api: k8s.ApiClient, name: str) -> set[str]:
    return {w.client_config.ca_bundle for c in configurations(api, name) for w in c.webhooks}


def pems(bundle_b64: str) -> list[bytes]:
    text = base64.b64decode(bundle_b64).decode()
    return [
        ("-----BEGIN CERTIFICATE-----" + block.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n").encode()
        for block in text.split("-----BEGIN CERTIFICATE-----")[1:]
    ]  # fmt: skip


def demo_pod(name: str) -> dict[str, Any]:
    (doc,) = docs((DEMO / name).read_text())
    return doc


def dry_run_create(
    cp: ControlPlane, namespace: str, obj: Mapping[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cp.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(dict(obj))
    )


def audit_annotations(cp: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    """Audit annotations of the completed create of pod `name` in `namespace` (merged over events)."""
    events = [
        e
        for e in cp.audit_events()
        if e.get("verb") == "create"
        and e.get("stage") == "ResponseComplete"
        and e.get("objectRef", {}).get("resource") == "pods"
        and e.get("objectRef", {}).get("namespace") == namespace
        and e.get("objectRef", {}).get("name") == name
        and not e.get("objectRef", {}).get("subresource")
    ]
    return {key: value for _, key, value in iter_audit_annotations(events)}


def mutations_by(annotations: Mapping[str, str], configuration: str) -> list[dict[str, Any]]:
    """The mutating-webhook audit records (round/index keys) of one configuration."""
    found = []
    for key, value in annotations.items():
        if key.startswith("mutation.webhook.admission.k8s.io/round_"):
            record = json.loads(value)
            if record.get("configuration") == configuration:
                found.append(record)
    return found


def other_immutable_os_validators(api: k8s.ApiClient, ours: str) -> list[str]:
    """Other validating configurations with immutable-os webhooks (another test's session webhook): when
    present they may answer a denial first, so a test cannot insist on our webhook's name in it."""
    admission = k8s.AdmissionregistrationV1Api(api)
    return [
        c.metadata.name
        for c in admission.list_validating_webhook_configuration().items
        if c.metadata.name != ours and any(w.name.endswith("immutable-os.io") for w in c.webhooks)
    ]


def wait_until_denied(
    cp: ControlPlane, namespace: str, obj: Mapping[str, Any], *, timeout: float = 30.0
) -> str:
    """Server-side dry-run creates of `obj` (a fresh name each time) until one is denied with our message
    and the audit log shows that OUR validating webhook decided `denied` (another test's webhook may be
    registered too; a changed configuration reaches the admission plugin through an informer). Returns
    the denial's stderr."""
    seen: list[str] = []

    def probe() -> str | None:
        name = f"{obj['metadata']['name']}-{secrets.token_hex(3)}"
        result = dry_run_create(cp, namespace, {**obj, "metadata": {**obj["metadata"], "name": name}})
        seen.append(result.stderr.strip() or "admitted")
        if result.returncode == 0 or ONLY_IMMUTABLE not in result.stderr:
            return None
        decided = audit_annotations(cp, namespace, name).get(f"{VALIDATING_PODS}/decision")
        return result.stderr if decided == "denied" else None

    stderr: str = wait_for(
        probe, timeout=timeout, interval=0.2, message=lambda: f"our denial; last: {seen[-1:]}"
    )
    return stderr


def served_certificate(port: int) -> x509.Certificate:
    """The leaf certificate the server on 127.0.0.1:`port` presents, unverified."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture(scope="module")
def cert_manager_crds(api_client: k8s.ApiClient) -> Iterator[None]:
    """cert-manager's Issuer and Certificate CRDs, reduced to the fields the chart sets (types and enums
    transcribed from cert-manager's CRDs): enough for strict server-side validation of the chart's
    cert-manager objects. cert-manager itself (issuing, cainjector) does not run here."""
    string, boolean = {"type": "string"}, {"type": "boolean"}
    strings = {"type": "array", "items": string}
    issuer_ref = {"type": "object", "required": ["name"],
                  "properties": {"name": string, "kind": string, "group": string}}  # fmt: skip
    usages = {"type": "array", "items": {"type": "string", "enum": [
        "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
        "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
        "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
        "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]}}  # fmt: skip
    certificate_spec = {
        "type": "object",
        "required": ["issuerRef", "secretName"],
        "properties": {
            "commonName": string, "dnsNames": strings, "ipAddresses": strings, "duration": string,
            "renewBefore": string, "isCA": boolean, "secretName": string, "issuerRef": issuer_ref,
            "usages": usages,
            "privateKey": {"type": "object", "properties": {
                "algorithm": {"type": "string", "enum": ["RSA", "ECDSA", "Ed25519"]},
                "encoding": {"type": "string", "enum": ["PKCS1", "PKCS8"]},
                "rotationPolicy": {"type": "string", "enum": ["Never", "Always"]},
                "size": {"type": "integer"}}},
        },
    }  # fmt: skip
    issuer_spec = {
        "type": "object",
        "properties": {
            "selfSigned": {"type": "object", "properties": {"crlDistributionPoints": strings}},
            "ca": {"type": "object", "required": ["secretName"],
                   "properties": {"secretName": string, "crlDistributionPoints": strings}},
        },
    }  # fmt: skip

    def schema(spec: dict[str, Any]) -> dict[str, Any]:
        status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "properties": {"spec": spec, "status": status}}

    bodies = [
        crd("cert-manager.io", "Certificate", "certificates", schema(certificate_spec)),
        crd("cert-manager.io", "Issuer", "issuers", schema(issuer_spec)),
    ]
    with installed_crds(api_client, bodies, "cert-manager"):
        yield


# --------------------------------------------------------------------- 1. server-side dry-run, every mode


MODES: dict[str, dict[str, Any]] = {
    "generate": {},
    "certManager": {"certificates": {"mode": "certManager"}},
    "existingSecret": {"certificates": {"mode": "existingSecret",
                                        "existingSecret": {"name": "webhook-tls", "caBundle": "QUJD"}}},
    "url": {"deployment": {"enabled": False}, "webhook": {"url": f"https://{LOOPBACK}:9443"}},
}  # fmt: skip


@pytest.mark.parametrize("mode", sorted(MODES))
def test_rendered_chart_is_accepted_by_server_side_dry_run(
    mode: str, helm: Helm, control_plane: ControlPlane, core_v1: k8s.CoreV1Api, request: pytest.FixtureRequest
) -> None:
    if mode == "certManager":
        request.getfixturevalue("cert_manager_crds")
    token = secrets.token_hex(3)
    namespace = create_namespace(core_v1, f"e2e-chart-dry-{token}")
    try:
        rendered = helm.template(f"dry-{token}", namespace, scoped(token, MODES[mode]))
        objects = docs(rendered)
        result = kubectl_ok(
            control_plane,
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            namespace,
            "-f",
            "-",
            input=rendered,
        )
        applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(applied) == len(objects), result.stdout
        assert "Warning" not in result.stderr, result.stderr
    finally:
        delete_namespace(core_v1, namespace)


def test_webhook_pod_passes_restricted_pod_security(
    helm: Helm, control_plane: ControlPlane, core_v1: k8s.CoreV1Api
) -> None:
    """The Deployment's pod, created (dry-run) in a namespace that enforces the `restricted` Pod Security
    level: accepted without warnings, priority class system-cluster-critical resolved outside kube-system."""
    token = secrets.token_hex(3)
    namespace = create_namespace(core_v1, f"e2e-chart-psa-{token}", {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
    })  # fmt: skip
    try:
        (deployment,) = [
            d for d in docs(helm.template(f"psa-{token}", namespace, {})) if d["kind"] == "Deployment"
        ]
        template = deployment["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "webhook", **template["metadata"]},
               "spec": template["spec"]}  # fmt: skip
        result = dry_run_create(control_plane, namespace, pod)
        assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
        assert "pod/webhook created (server dry run)" in result.stdout

        # The level is really enforced here: the same pod with privilege escalation allowed is refused.
        weaker = copy.deepcopy(pod)
        weaker["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        refused = dry_run_create(control_plane, namespace, weaker)
        assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr, (
            refused.stderr
        )
    finally:
        delete_namespace(core_v1, namespace)


def test_kind_recipe_objects_are_valid(control_plane: ControlPlane, core_v1: k8s.CoreV1Api) -> None:
    """The kind cluster's node labels on real Node objects, and the demo namespaces (server-side dry-run)."""
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    for i, node in enumerate(cluster["nodes"]):
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": f"kind-dry-{i}", "labels": node.get("labels") or {}}}  # fmt: skip
        core_v1.create_node(body, dry_run="All")
    kubectl_ok(
        control_plane, "apply", "--dry-run=server", "--validate=strict", "-f", str(DEMO / "namespaces.yaml")
    )


# ---------------------------------------------- 2. the chart-made configurations, applied, judge the demo


def test_chart_made_configurations_judge_the_demo_manifests(
    helm: Helm,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    node_pools: NodePools,
) -> None:
    token = secrets.token_hex(3)
    release = f"url-{token}"
    fullname = f"{release}-immutable-os-webhook"
    scope = {SCOPE_LABEL: token}
    general, acl, osguard = (unique_pool_name(p) for p in ("general", "acl", "osguard"))
    node_pools(general, 2, os_sku="Ubuntu")
    node_pools(acl, 1, os_sku="AzureContainerLinux")
    node_pools(osguard, 1, os_sku="AzureLinuxOSGuard")

    demo_namespaces = {d["metadata"]["name"]: d["metadata"].get("labels", {}) for d in docs((DEMO / "namespaces.yaml").read_text())}  # fmt: skip
    release_ns = f"e2e-chart-rel-{token}"
    enforce_ns = f"e2e-chart-enforce-{token}"
    warn_ns = f"e2e-chart-warn-{token}"
    control_ns = f"e2e-chart-control-{token}"
    created = [
        create_namespace(core_v1, release_ns),
        create_namespace(core_v1, enforce_ns, {**demo_namespaces["demo-enforce"], **scope}),
        create_namespace(core_v1, warn_ns, {**demo_namespaces["demo-warn"], **scope}),
    ]
    process: WebhookProcess | None = None
    rendered = ""
    try:
        base = scoped(token, {"deployment": {"enabled": False}, "certificates": {"mode": "existingSecret"}})
        # The webhook runs here with the config the chart renders into its ConfigMap.
        preview = docs(helm.template(release, release_ns, merge(base, {
            "webhook": {"url": "https://127.0.0.1:1"}, "certificates": {"existingSecret": {"caBundle": "QUJD"}}})))  # fmt: skip
        (config_map,) = [d for d in preview if d["kind"] == "ConfigMap"]
        process = WebhookProcess(
            control_plane, f"chart-{token}", yaml.safe_load(config_map["data"]["config.yaml"])
        )
        process.start()

        values = merge(base, {"webhook": {"url": process.url},
                              "certificates": {"existingSecret": {"caBundle": process.ca_bundle}}})  # fmt: skip
        rendered = helm.template(release, release_ns, values)
        kubectl_ok(control_plane, "apply", "-n", release_ns, "-f", "-", input=rendered)
        others = other_immutable_os_validators(api_client, fullname)

        # 1. Denied: writes /usr/local/bin, pinned to Azure Container Linux (demo.sh step 1).
        acl_pod = demo_pod("tool-installer-on-acl.yaml")
        wait_until_denied(control_plane, enforce_ns, acl_pod)
        denied = control_plane.kubectl(
            "apply", "-n", enforce_ns, "-f", str(DEMO / "tool-installer-on-acl.yaml")
        )
        print(
            f"\n$ kubectl apply -n {enforce_ns} -f hack/kind/demo/tool-installer-on-acl.yaml\n{denied.stderr}"
        )
        assert denied.returncode == 1
        assert denied.stderr.startswith("Error from server (Forbidden): error when creating")
        assert (
            ONLY_IMMUTABLE in denied.stderr and f"pool {acl} (Azure Container Linux, 1 node)" in denied.stderr
        )
        assert "/usr is read-only (dm-verity) on Azure Container Linux" in denied.stderr
        if not others:
            assert f'admission webhook "{VALIDATING_PODS}" denied the request' in denied.stderr
        annotations = audit_annotations(control_plane, enforce_ns, "tool-installer-on-acl")
        assert annotations.get(f"{VALIDATING_PODS}/decision") == "denied", annotations

        # The workloads webhook judges pod templates: the same pod as a Deployment is denied too.
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "log-reader"},
                      "spec": {"selector": {"matchLabels": {"app": "r"}},
                               "template": {"metadata": {"labels": {"app": "r"}}, "spec": acl_pod["spec"]}}}  # fmt: skip
        refused = dry_run_create(control_plane, enforce_ns, deployment)
        assert refused.returncode == 1 and ONLY_IMMUTABLE in refused.stderr, refused.stderr
        if not others:
            assert f'admission webhook "{VALIDATING_WORKLOADS}" denied the request' in refused.stderr

        # 2. Warned: writes /lib/modules, pinned to OS Guard, namespace labelled immutable-os.io/mode=warn.
        warned = kubectl_ok(
            control_plane, "apply", "-n", warn_ns, "-f", str(DEMO / "node-agent-on-osguard.yaml")
        )
        print(
            f"\n$ kubectl apply -n {warn_ns} -f hack/kind/demo/node-agent-on-osguard.yaml\n{warned.stderr}{warned.stdout}"
        )
        assert "Warning: immutable-os: would be denied in enforce mode" in warned.stderr, warned.stderr
        annotations = audit_annotations(control_plane, warn_ns, "node-agent-on-osguard")
        assert annotations.get(f"{VALIDATING_PODS}/decision") == "warned", annotations

        # 3. Steered: the installer without placement gets node affinity away from the pools it breaks on.
        steered = kubectl_ok(
            control_plane, "apply", "-n", enforce_ns, "-f", str(DEMO / "tool-installer.yaml")
        )
        print(
            f"\n$ kubectl apply -n {enforce_ns} -f hack/kind/demo/tool-installer.yaml\n{steered.stderr}{steered.stdout}"
        )
        assert "Warning: immutable-os: steered away from" in steered.stderr
        stored = core_v1.read_namespaced_pod("tool-installer", enforce_ns)
        assert (
            stored.metadata.annotations["immutable-os.io/steered"]
            == "Azure Container Linux,Azure Linux OS Guard"
        )
        terms = stored.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
        assert all(
            any(e.key == REQUESTED and e.operator == "NotIn" and set(e.values) >= {"AzureContainerLinux", "AzureLinuxOSGuard"}
                for e in t.match_expressions) for t in terms
        ), terms  # fmt: skip
        annotations = audit_annotations(control_plane, enforce_ns, "tool-installer")
        records = mutations_by(annotations, fullname)
        assert [r["webhook"] for r in records] == [MUTATING_PODS], annotations
        if not others:  # else another configuration's webhook may have steered it first
            assert records[0]["mutated"] is True, annotations
        assert annotations.get(f"{VALIDATING_PODS}/decision") == "works", annotations

        # The scheduler places the steered pod on a general-purpose node.
        def scheduled() -> str | None:
            node: str | None = core_v1.read_namespaced_pod("tool-installer", enforce_ns).spec.node_name
            return node

        node = wait_for(scheduled, timeout=30, message="the steered pod to be scheduled")
        labels = core_v1.read_node(node).metadata.labels
        assert labels.get(REQUESTED) not in IMMUTABLE_SKUS, (node, labels)

        # 4. Untouched: reading the host works on every pool; the log reader is admitted as it is.
        reader = kubectl_ok(control_plane, "apply", "-n", enforce_ns, "-f", str(DEMO / "log-reader.yaml"))
        assert "Warning" not in reader.stderr, reader.stderr
        assert core_v1.read_namespaced_pod("log-reader", enforce_ns).spec.affinity is None

        # 5. Never judged: kube-system and the release namespace, even when they carry the scope label. The
        # control namespace is labelled last; once it is judged, the apiserver has seen the other labels.
        core_v1.patch_namespace("kube-system", {"metadata": {"labels": scope}})
        core_v1.patch_namespace(release_ns, {"metadata": {"labels": scope}})
        created.append(create_namespace(core_v1, control_ns, scope))
        wait_until_denied(control_plane, control_ns, acl_pod)
        for namespace in ("kube-system", release_ns):
            probe = {**acl_pod, "metadata": {"name": f"untouched-{token}"}}
            result = dry_run_create(control_plane, namespace, probe)
            if namespace == "kube-system" or not others:  # others may judge the release namespace
                assert result.returncode == 0 and "Warning" not in result.stderr, (namespace, result.stderr)
            annotations = audit_annotations(control_plane, namespace, f"untouched-{token}")
            assert not [k for k in annotations if k.startswith(("pods.immutable-os.io/", "steer-pods."))], (
                annotations
            )
            assert not mutations_by(annotations, fullname), annotations

        # 6. The host-access matchCondition: templates at every path still reach the webhook; objects
        # without host access never do (the webhook logs every review it gets, at debug).
        template = {"metadata": {"labels": {"app": "r"}}, "spec": acl_pod["spec"]}
        cron_job = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": f"cron-{token}"},
            "spec": {
                "schedule": "0 * * * *",
                "jobTemplate": {
                    "spec": {"template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}}
                },
            },
        }
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"tmpl-{token}"},
                        "template": template}  # fmt: skip
        for obj in (cron_job, pod_template):
            refused = dry_run_create(control_plane, enforce_ns, obj)
            assert refused.returncode == 1 and ONLY_IMMUTABLE in refused.stderr, (obj["kind"], refused.stderr)
        clean_spec = {k: v for k, v in acl_pod["spec"].items() if k != "volumes"}
        clean_spec["containers"] = [
            {k: v for k, v in c.items() if k != "volumeMounts"} for c in clean_spec["containers"]
        ]
        clean = {**acl_pod, "metadata": {"name": f"clean-{token}"}, "spec": clean_spec}
        assert dry_run_create(control_plane, enforce_ns, clean).returncode == 0
        judged = {r.get("name") for r in process.reviews()}
        assert f"cron-{token}" in judged and f"clean-{token}" not in judged, sorted(n for n in judged if n)
    finally:
        with contextlib.suppress(k8s.ApiException):
            core_v1.patch_namespace("kube-system", {"metadata": {"labels": {SCOPE_LABEL: None}}})
        delete_release_objects(control_plane, release)
        if process is not None:
            process.stop()
        for namespace in created:
            delete_namespace(core_v1, namespace)
    assert not configurations(api_client, fullname)


# ------------------------------------------------------ 3. helm install, upgrade, rotation, uninstall


def test_helm_install_upgrade_rotate_and_uninstall(
    helm: Helm,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    node_pools: NodePools,
) -> None:
    token = secrets.token_hex(3)
    release, release_ns = f"gen-{token}", f"e2e-chart-gen-{token}"
    fullname = f"{release}-immutable-os-webhook"
    secret_name = f"{fullname}-tls"
    acl = unique_pool_name("acl")
    node_pools(unique_pool_name("general"), 1, os_sku="Ubuntu")
    node_pools(acl, 1, os_sku="AzureContainerLinux")
    judged_ns = create_namespace(core_v1, f"e2e-chart-judged-{token}", {SCOPE_LABEL: token})
    probe = demo_pod("tool-installer-on-acl.yaml")
    # The port is chosen before the release exists: the URL goes into the chart, and the chart puts its
    # host (127.0.0.1) into the generated serving certificate.
    process = WebhookProcess(control_plane, f"gen-{token}", {})
    values = helm.values_file(
        scoped(token, {"deployment": {"enabled": False}, "webhook": {"url": process.url}})
    )
    upgrade = ("upgrade", release, str(CHART), "-n", release_ns, "-f", values)

    def secret() -> dict[str, bytes]:
        data = core_v1.read_namespaced_secret(secret_name, release_ns).data
        return {k: base64.b64decode(v) for k, v in data.items()}

    def serve(pair: Mapping[str, bytes]) -> None:
        process.cert_path.write_bytes(pair["tls.crt"])
        process.key_path.write_bytes(pair["tls.key"])
        process.ca_path.write_bytes(pair["ca.crt"])  # the process's own readiness probe trusts this CA

    installed = False
    try:
        helm.run("install", release, str(CHART), "-n", release_ns, "--create-namespace", "-f", values)
        installed = True
        first = secret()
        assert {b64 for b64 in ca_bundles(api_client, fullname)} == {
            base64.b64encode(first["ca.crt"]).decode()
        }
        config_map = core_v1.read_namespaced_config_map(fullname, release_ns)
        process.config_path.write_text(config_map.data["config.yaml"])
        serve(first)
        process.start()
        # The apiserver trusts the chart-generated CA and the 127.0.0.1 SAN: it reaches our denial.
        wait_until_denied(control_plane, judged_ns, probe)

        # Upgrade: the Secret is found by lookup and reused; the caBundle stays.
        helm.run(*upgrade)
        helm.run(*upgrade, "--set", "webhook.timeoutSeconds=7")
        assert secret() == first
        assert ca_bundles(api_client, fullname) == {base64.b64encode(first["ca.crt"]).decode()}
        assert {w.timeout_seconds for c in configurations(api_client, fullname) for w in c.webhooks} == {7}

        # Rotation: delete the Secret and upgrade. A new CA and certificate; the caBundle carries the new
        # CA and the old one, so the server, still on the old certificate, keeps being trusted.
        core_v1.delete_namespaced_secret(secret_name, release_ns)
        helm.run(*upgrade)
        second = secret()
        assert second["ca.crt"] != first["ca.crt"]
        (bundle,) = ca_bundles(api_client, fullname)
        assert pems(bundle) == [second["ca.crt"], first["ca.crt"]]
        wait_until_denied(control_plane, judged_ns, probe)

        # The server picks up the new pair from disk (as from a Secret volume), no restart.
        serve(second)
        new_cert = x509.load_pem_x509_certificate(second["tls.crt"])
        wait_for(lambda: served_certificate(process.port) == new_cert, timeout=15,
                 message="the server to serve the rotated certificate")  # fmt: skip
        wait_until_denied(control_plane, judged_ns, probe)
        x509.load_pem_x509_certificate(second["tls.crt"]).verify_directly_issued_by(
            x509.load_pem_x509_certificate(second["ca.crt"])
        )

        # The next upgrade drops the old CA.
        helm.run(*upgrade)
        assert secret() == second
        (bundle,) = ca_bundles(api_client, fullname)
        assert pems(bundle) == [second["ca.crt"]]
        wait_until_denied(control_plane, judged_ns, probe)

        # Uninstall: the configurations are gone, and with them the judging.
        helm.run("uninstall", release, "-n", release_ns, "--wait")
        installed = False
        assert not configurations(api_client, fullname)
        with pytest.raises(k8s.ApiException) as gone:
            core_v1.read_namespaced_secret(secret_name, release_ns)
        assert gone.value.status == 404

        def admitted() -> bool:
            return dry_run_create(control_plane, judged_ns, probe).returncode == 0 or bool(
                other_immutable_os_validators(api_client, fullname)
            )

        wait_for(admitted, timeout=30, message="pods to be admitted without the webhook")
    finally:
        if installed:
            helm.run("uninstall", release, "-n", release_ns, check=False)
        delete_release_objects(control_plane, release)
        process.stop()
        delete_namespace(core_v1, judged_ns)
        delete_namespace(core_v1, release_ns)
