"""The Helm chart, the image recipe and the kind recipe, checked without a cluster.

`helm lint` and `helm template` (helm from $KUBEBUILDER_ASSETS, else PATH; the tests skip without it, and
fail under CI=true), with the rendered objects read as YAML. What needs an apiserver (server-side dry-run,
lookup-based certificate reuse, the chart-made configurations judging real requests) is in
tests/e2e/test_chart.py.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.adapters import certs
from webhook.cli import build_parser
from webhook.core.config import CONFIG_API_VERSION, CONFIG_KIND, Config, Mode
from webhook.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "immutable-os-webhook"
KIND = REPO / "hack" / "kind"
DEMO = KIND / "demo"
RELEASE, NAMESPACE = "iow", "iow-system"
FULLNAME = f"{RELEASE}-immutable-os-webhook"
WORKLOAD_RESOURCES = {
    "apps": {"deployments", "daemonsets", "statefulsets", "replicasets"},
    "batch": {"jobs", "cronjobs"},
    "": {"replicationcontrollers", "podtemplates"},
}

Objects = list[dict[str, Any]]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def find_helm() -> str | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS", "")
    if assets and os.access(Path(assets) / "helm", os.X_OK):
        return str(Path(assets) / "helm")
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    found = find_helm()
    if found is None:
        message = (
            "helm not found in $KUBEBUILDER_ASSETS or on PATH; "
            'get it with: export "$(hack/control-plane.sh | tail -1)"'
        )
        if _in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return found


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)


@functools.lru_cache(maxsize=64)
def _template(helm: str, values_json: str, namespace: str) -> tuple[int, str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values_file:
        values_file.write(values_json)  # JSON is YAML
        values_file.flush()
        result = run_helm(helm, "template", RELEASE, str(CHART), "-n", namespace, "-f", values_file.name)
    return result.returncode, result.stdout, result.stderr


def template(
    helm: str, values: Mapping[str, Any] | None = None, namespace: str = NAMESPACE, *, fail: bool = False
) -> Any:
    """The rendered objects (or, with fail=True, helm's stderr, asserting that it failed)."""
    code, out, err = _template(helm, json.dumps(values or {}, sort_keys=True), namespace)
    if fail:
        assert code != 0, f"helm template should have failed with {values}"
        return err
    assert code == 0, err
    return [d for d in yaml.safe_load_all(out) if d]


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objects: Objects) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: Objects) -> dict[str, Any]:
    (c,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(c)


def hooks(objects: Objects) -> dict[str, dict[str, Any]]:
    """Every webhook of both configurations by name, with the configuration kind added."""
    found = {}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in one(objects, kind)["webhooks"]:
            found[hook["name"]] = {**hook, "configuration": kind}
    return found


URL_MODE = {"deployment": {"enabled": False}, "webhook": {"url": "https://127.0.0.1:9443"}}
EXISTING = {
    "certificates": {"mode": "existingSecret", "existingSecret": {"name": "my-tls", "caBundle": "QUJD"}}
}
MODES: dict[str, dict[str, Any]] = {
    "generate": {},
    "certManager": {"certificates": {"mode": "certManager"}},
    "existingSecret": EXISTING,
    "url": URL_MODE,
}


# ---------------------------------------------------------------------------------------------- lint


def test_helm_lint_is_clean_and_strict(helm: str) -> None:
    for args in (("lint", str(CHART)), ("lint", "--strict", str(CHART))):
        result = run_helm(helm, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout
    for values in MODES.values():
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values_file:
            values_file.write(json.dumps(values))
            values_file.flush()
            result = run_helm(helm, "lint", "--strict", str(CHART), "-f", values_file.name)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("generate", ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "MutatingWebhookConfiguration",
                      "PodDisruptionBudget", "Secret", "Service", "ServiceAccount", "ValidatingWebhookConfiguration"]),
        ("certManager", ["Certificate", "Certificate", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
                         "Issuer", "Issuer", "MutatingWebhookConfiguration", "PodDisruptionBudget", "Service",
                         "ServiceAccount", "ValidatingWebhookConfiguration"]),
        ("existingSecret", ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "MutatingWebhookConfiguration",
                            "PodDisruptionBudget", "Service", "ServiceAccount", "ValidatingWebhookConfiguration"]),
        ("url", ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "MutatingWebhookConfiguration", "Secret",
                 "ServiceAccount", "ValidatingWebhookConfiguration"]),
    ],
)  # fmt: skip
def test_template_renders_each_mode(helm: str, mode: str, expected: list[str]) -> None:
    objects = template(helm, MODES[mode])
    assert kinds(objects) == expected
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding") and "Webhook" not in obj["kind"]:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


# ------------------------------------------------------------------------------------------ the pods


def test_pod_is_hardened(helm: str) -> None:
    deployment = one(template(helm), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    c = container(template(helm))
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The webhook itself needs no host access: none of what it judges others for.
    assert not {"hostPID", "hostIPC", "hostNetwork", "nodeName"} & set(pod)
    assert {v["name"]: sorted(set(v) - {"name"}) for v in pod["volumes"]} == {
        "tls": ["secret"],
        "config": ["configMap"],
        "tmp": ["emptyDir"],
    }
    assert pod["volumes"][0]["secret"] == {"secretName": f"{FULLNAME}-tls", "defaultMode": 0o440}
    assert all("subPath" not in m for m in c["volumeMounts"])  # Secret updates reach the pod
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == FULLNAME
    assert c["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    ]
    assert c["image"] == "immutable-os-webhook:0.1.0"


def test_container_args_are_flags_the_serve_command_accepts(helm: str) -> None:
    args = container(template(helm))["args"]
    parsed = build_parser().parse_args(["serve", *args])
    assert parsed.cert_file == "/etc/immutable-os-webhook/tls/tls.crt"
    assert parsed.key_file == "/etc/immutable-os-webhook/tls/tls.key"
    assert parsed.config == "/etc/immutable-os-webhook/config/config.yaml"
    assert (parsed.host, parsed.port, parsed.log_level) == ("0.0.0.0", 8443, "info")
    assert parsed.kubeconfig is None and not parsed.nodes_file  # in-cluster API access
    mounts = {m["mountPath"] for m in container(template(helm))["volumeMounts"]}
    assert {str(Path(parsed.cert_file).parent), str(Path(parsed.config).parent)} <= mounts


def test_probes_and_graceful_termination(helm: str) -> None:
    objects = template(helm)
    c = container(objects)
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert c[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}, probe
    assert c["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    # distroless has no shell: the preStop delay is the kubelet's sleep action, not `exec sleep`.
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    grace = one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert "--drain-seconds=15" in c["args"]
    assert grace > 5 + 15 + 1  # the preStop sleep, then the server's drain and its 1 s last call

    no_hook = container(template(helm, {"deployment": {"preStopSleepSeconds": 0}}))
    assert "lifecycle" not in no_hook


def test_replicas_spread_budget_and_priority(helm: str) -> None:
    objects = template(helm)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert container(objects)["resources"]["requests"] and container(objects)["resources"]["limits"]["memory"]

    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    placed = template(helm, {"deployment": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "agentpool", "operator": "In", "values": ["system"]}]}]}}}})  # fmt: skip
    (node_term,) = one(placed, "Deployment")["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert node_term["matchExpressions"] == [{"key": "agentpool", "operator": "In", "values": ["system"]}]

    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"

    service = one(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]

    custom = template(
        helm, {"deployment": {"replicas": 3, "podAntiAffinity": "required", "priorityClassName": ""}}
    )
    custom_pod = one(custom, "Deployment")["spec"]["template"]["spec"]
    assert one(custom, "Deployment")["spec"]["replicas"] == 3
    assert "priorityClassName" not in custom_pod
    assert (
        custom_pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
            "topologyKey"
        ]
        == "kubernetes.io/hostname"
    )
    none = one(template(helm, {"deployment": {"podAntiAffinity": "none"}}), "Deployment")
    assert "affinity" not in none["spec"]["template"]["spec"]


def test_rbac_is_get_list_watch_on_nodes_and_namespaces_only(helm: str) -> None:
    objects = template(helm)
    role = one(objects, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert kinds(template(helm, {"rbac": {"create": False}})).count("ClusterRole") == 0


def test_rbac_patches_nodes_only_with_the_labeller_enabled(helm: str) -> None:
    read = {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": ["get", "list", "watch"]}
    for values in ({}, {"labeller": {"enabled": False}}):
        objects = template(helm, values)
        assert one(objects, "ClusterRole")["rules"] == [read]
        assert build_parser().parse_args(["serve", *container(objects)["args"]]).label_nodes is False

    labelling = template(helm, {"labeller": {"enabled": True}})
    assert one(labelling, "ClusterRole")["rules"] == [
        read, {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]}
    ]  # fmt: skip
    assert build_parser().parse_args(["serve", *container(labelling)["args"]]).label_nodes is True
    assert "--label-nodes" in container(labelling)["args"]
    no_rbac = template(helm, {"labeller": {"enabled": True}, "rbac": {"create": False}})
    assert "ClusterRole" not in kinds(no_rbac)


# -------------------------------------------------------------------------------------------- webhooks


def test_webhook_configurations(helm: str) -> None:
    found = hooks(template(helm))
    assert set(found) == {
        "steer-pods.immutable-os.io", "steer-workloads.immutable-os.io",
        "pods.immutable-os.io", "workloads.immutable-os.io",
    }  # fmt: skip
    for name, hook in found.items():
        mutating = hook["configuration"] == "MutatingWebhookConfiguration"
        assert hook["admissionReviewVersions"] == ["v1"], name
        assert hook["sideEffects"] == "None", name
        assert hook["timeoutSeconds"] == 5, name
        assert hook["matchPolicy"] == "Equivalent", name
        assert hook.get("reinvocationPolicy") == ("IfNeeded" if mutating else None), name
        assert hook["failurePolicy"] == ("Fail" if name.endswith("pods.immutable-os.io") else "Ignore"), name
        assert hook["clientConfig"]["service"] == {
            "name": FULLNAME, "namespace": NAMESPACE, "path": "/mutate" if mutating else "/validate", "port": 443,
        }  # fmt: skip
        (exclusion,) = hook["namespaceSelector"]["matchExpressions"]
        assert exclusion == {
            "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE],
        }  # fmt: skip
        assert "objectSelector" not in hook
        assert [c["name"] for c in hook["matchConditions"]] == ["host-access"], name

    pod_rules = found["pods.immutable-os.io"]["rules"]
    assert [(r["apiGroups"], r["operations"], r["resources"]) for r in pod_rules] == [
        ([""], ["CREATE", "UPDATE"], ["pods"]),
        ([""], ["UPDATE"], ["pods/ephemeralcontainers"]),
    ]
    assert [r["resources"] for r in found["steer-pods.immutable-os.io"]["rules"]] == [["pods"]]
    for name in ("workloads.immutable-os.io", "steer-workloads.immutable-os.io"):
        rules = found[name]["rules"]
        assert {r["apiGroups"][0]: set(r["resources"]) for r in rules} == WORKLOAD_RESOURCES
        assert all(r["operations"] == ["CREATE", "UPDATE"] and r["apiVersions"] == ["v1"] for r in rules)


def test_webhook_settings(helm: str) -> None:
    condition = {
        "name": "not-node-users",
        "expression": "!request.userInfo.username.startsWith('system:node:')",
    }
    values = {
        "webhook": {
            "timeoutSeconds": 3,
            "excludeNamespaces": ["monitoring", "kube-system"],
            "namespaceSelector": {"matchLabels": {"team": "platform"},
                                  "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            "objectSelector": {"matchExpressions": [{"key": "skip-immutable-os", "operator": "DoesNotExist"}]},
            "pods": {"failurePolicy": "Ignore", "matchConditions": [condition]},
            "workloads": {"failurePolicy": "Fail"},
        }
    }  # fmt: skip
    found = hooks(template(helm, values))
    for name, hook in found.items():
        assert hook["timeoutSeconds"] == 3
        assert hook["failurePolicy"] == ("Ignore" if name.endswith("pods.immutable-os.io") else "Fail")
        assert hook["namespaceSelector"] == {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                 "values": ["kube-system", NAMESPACE, "monitoring"]},
                {"key": "tier", "operator": "Exists"},
            ],
            "matchLabels": {"team": "platform"},
        }  # fmt: skip
        assert hook["objectSelector"] == values["webhook"]["objectSelector"]
        conditions = hook["matchConditions"]
        assert conditions[0]["name"] == "host-access"
        assert conditions[1:] == ([condition] if "pods" in name else [])

    only_validating = template(helm, {"webhook": {"mutating": {"enabled": False}}})
    assert "MutatingWebhookConfiguration" not in kinds(only_validating)


def _secret_pems(objects: Objects) -> dict[str, bytes]:
    secret = one(objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def test_generated_certificate_matches_the_ca_bundle(helm: str) -> None:
    objects = template(helm)
    pems = _secret_pems(objects)
    assert set(pems) == {"tls.crt", "tls.key", "ca.crt"}
    for hook in hooks(objects).values():
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == pems["ca.crt"]
    ca = x509.load_pem_x509_certificate(pems["ca.crt"])
    cert = x509.load_pem_x509_certificate(pems["tls.crt"])
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(certs.serving_dns_names(FULLNAME, NAMESPACE))
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert pems["tls.key"].startswith(b"-----BEGIN EC PRIVATE KEY-----")  # ECDSA P-256, as certs/ makes
    annotation = one(objects, "Secret")["metadata"]["annotations"]["immutable-os.io/serving-names-sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotation)


def test_url_mode(helm: str) -> None:
    objects = template(helm, {**URL_MODE, "certificates": {"extraDNSNames": ["webhook.example.com"]}})
    assert not {"Deployment", "Service", "PodDisruptionBudget"} & set(kinds(objects))
    for hook in hooks(objects).values():
        path = "/mutate" if hook["configuration"].startswith("Mutating") else "/validate"
        assert hook["clientConfig"]["url"] == f"https://127.0.0.1:9443{path}"
        assert "service" not in hook["clientConfig"]
    cert = x509.load_pem_x509_certificate(_secret_pems(objects)["tls.crt"])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert "webhook.example.com" in sans.get_values_for_type(x509.DNSName)

    by_name = template(helm, {**URL_MODE, "webhook": {"url": "https://webhook.example.com/base/"}})
    hook = hooks(by_name)["pods.immutable-os.io"]
    assert hook["clientConfig"]["url"] == "https://webhook.example.com/base/validate"
    names = x509.load_pem_x509_certificate(_secret_pems(by_name)["tls.crt"]).extensions
    assert "webhook.example.com" in names.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


def test_cert_manager_mode(helm: str) -> None:
    objects = template(helm, MODES["certManager"])
    assert "Secret" not in kinds(objects)
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = one(objects, kind)
        assert config["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{FULLNAME}-serving"
        }
        assert all("caBundle" not in h["clientConfig"] for h in config["webhooks"])
    ca = one(objects, "Certificate", f"{FULLNAME}-ca")["spec"]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == f"{FULLNAME}-selfsigned"
    assert one(objects, "Issuer", f"{FULLNAME}-selfsigned")["spec"] == {"selfSigned": {}}
    assert one(objects, "Issuer", f"{FULLNAME}-ca")["spec"] == {"ca": {"secretName": ca["secretName"]}}
    serving = one(objects, "Certificate", f"{FULLNAME}-serving")["spec"]
    assert serving["secretName"] == f"{FULLNAME}-tls"
    assert serving["dnsNames"] == list(certs.serving_dns_names(FULLNAME, NAMESPACE))
    assert serving["issuerRef"] == {"name": f"{FULLNAME}-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert serving["usages"] == ["server auth", "digital signature"]
    volume = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == serving["secretName"]

    own_issuer = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    custom = template(
        helm, {"certificates": {"mode": "certManager", "certManager": {"issuerRef": own_issuer}}}
    )
    assert kinds(custom).count("Issuer") == 0 and kinds(custom).count("Certificate") == 1
    assert one(custom, "Certificate")["spec"]["issuerRef"] == own_issuer


def test_existing_secret_mode(helm: str) -> None:
    objects = template(helm, EXISTING)
    volume = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == "my-tls"
    assert {h["clientConfig"]["caBundle"] for h in hooks(objects).values()} == {"QUJD"}

    ca = certs.generate_ca("test-ca")
    pem = ca.cert_pem.decode()
    for given in (pem, certs.ca_bundle_b64(ca.cert_pem), certs.ca_bundle_b64(ca.cert_pem) + "\n"):
        values = {
            "certificates": {"mode": "existingSecret", "existingSecret": {"name": "x", "caBundle": given}}
        }
        bundles = {h["clientConfig"]["caBundle"] for h in hooks(template(helm, values)).values()}
        assert bundles == {certs.ca_bundle_b64(ca.cert_pem)}, "PEM or base64 PEM, both become base64 PEM"

    err = template(
        helm, {"certificates": {"mode": "existingSecret", "existingSecret": {"caBundle": "QUJD"}}}, fail=True
    )
    assert "certificates.existingSecret.name" in err
    err = template(
        helm, {"certificates": {"mode": "existingSecret", "existingSecret": {"name": "x"}}}, fail=True
    )
    assert "certificates.existingSecret.caBundle" in err


# ---------------------------------------------------------------------------------------------- config


def rendered_config(objects: Objects) -> dict[str, Any]:
    data = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert isinstance(data, dict)
    return data


RICH_CONFIG: dict[str, Any] = {
    "mode": "warn",
    "checks": {"host-network": {"severity": "warning"}, "privileged": True, "host-ipc": False},
    "allowedHostPaths": [{"pathPrefix": "/var/log", "readOnly": True}],
    "profiles": {"talos": False, "flatcar": {"osImagePrefixes": ["Flatcar Container Linux Pro"]},
                 "corp-os": {"displayName": "Corp OS", "labels": {"example.com/os": ["locked"]}}},
    "immutableNodeSelectors": [{"name": "locked", "matchLabels": {"example.com/locked": "true"}},
                               {"matchExpressions": [{"key": "immutable-os.io/profile", "operator": "Exists"}]}],
    "steering": {"enabled": True, "strategy": "nodeSelector", "nodeSelector": {"agentpool": "general"}},
    "exemptions": {"namespaces": ["ci"], "usernames": ["alice"], "groups": ["sre"], "runtimeClasses": ["kata"]},
    "onInternalError": "deny",
    "maxInventoryStalenessSeconds": 120,
}  # fmt: skip


def test_config_map_is_a_config_the_webhook_accepts(helm: str) -> None:
    default = rendered_config(template(helm))
    assert Config.from_dict(default) == Config.from_dict(None)

    rich = rendered_config(template(helm, {"config": RICH_CONFIG}))
    assert rich == {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND, **RICH_CONFIG}
    config = Config.from_dict(rich)
    assert config.mode is Mode.WARN
    assert config.allow_on_internal_error is False
    assert config.max_inventory_staleness_seconds == 120
    assert config.immutable_node_selectors[0].name == "locked"
    assert {p.name for p in config.enabled_profiles} >= {"corp-os", "flatcar"}
    assert "talos" not in {p.name for p in config.enabled_profiles}


def checksum(objects: Objects) -> str:
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["checksum/config"]
    return value


def test_config_change_rolls_the_pods(helm: str) -> None:
    base = checksum(template(helm))
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum(template(helm)) == base  # stable: not a function of the generated certificate
    assert checksum(template(helm, {"deployment": {"replicas": 3}})) == base
    assert checksum(template(helm, {"config": {"mode": "warn"}})) != base
    assert checksum(template(helm, {"config": {"allowedHostPaths": [{"pathPrefix": "/var/log"}]}})) != base


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"deployment": {"replica": 3}}, "at '/deployment': additional properties 'replica' not allowed"),
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"config": {"mode": "enforcing"}}, "at '/config/mode': value must be one of 'enforce', 'warn', 'audit', 'off'"),
        ({"config": {"checks": {"host-pat": False}}}, "at '/config/checks': additional properties 'host-pat' not allowed"),
        ({"config": {"checks": {"host-pid": {"severity": "fatal"}}}}, "at '/config/checks/host-pid/severity'"),
        ({"config": {"profiles": {"flatcar": {"osImagePrefix": ["x"]}}}}, "additional properties 'osImagePrefix' not allowed"),
        ({"config": {"profiles": {"corp-os": True}}}, "at '/config/profiles/corp-os'"),
        ({"config": {"allowedHostPaths": [{"pathPrefix": "var/log"}]}}, "at '/config/allowedHostPaths/0/pathPrefix'"),
        ({"config": {"exemption": {"namespaces": ["x"]}}}, "additional properties 'exemption' not allowed"),
        ({"config": {"steering": {"strategy": "selector"}}}, "at '/config/steering/strategy'"),
        ({"config": {"maxInventoryStalenessSeconds": 0}}, "at '/config/maxInventoryStalenessSeconds'"),
        ({"webhook": {"pods": {"failurePolicy": "fail"}}}, "at '/webhook/pods/failurePolicy': value must be one of 'Fail', 'Ignore'"),
        ({"webhook": {"url": "http://10.0.0.5:8443"}}, "at '/webhook/url'"),
        ({"webhook": {"timeoutSeconds": 31}}, "at '/webhook/timeoutSeconds'"),
        ({"certificates": {"mode": "generated"}}, "at '/certificates/mode'"),
        ({"labeller": {"enable": True}}, "additional properties 'enable' not allowed"),
        ({"labeller": {"enabled": "yes"}}, "at '/labeller/enabled'"),
        ({"deployment": {"securityContext": {"runAsUser": 0}}}, "additional properties 'securityContext' not allowed"),
    ],
)  # fmt: skip
def test_schema_rejects_typos_with_the_path(helm: str, values: dict[str, Any], message: str) -> None:
    err = template(helm, values, fail=True)
    assert "values don't meet the specifications of the schema" in err
    assert message in err, err


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"deployment": {"terminationGracePeriodSeconds": 21}}, "must exceed deployment.preStopSleepSeconds (5) plus deployment.drainSeconds (15)"),
        ({"deployment": {"drainSeconds": 30}}, "terminationGracePeriodSeconds (30) must exceed"),
        ({"deployment": {"replicas": 1}}, "deployment.replicas (1) must exceed podDisruptionBudget.minAvailable (1)"),
        ({"deployment": {"enabled": False}}, "set webhook.url"),
        ({"config": {"steering": {"strategy": "nodeSelector"}}}, "needs config.steering.nodeSelector"),
    ],
)  # fmt: skip
def test_cross_field_rules_fail_with_a_clear_message(helm: str, values: dict[str, Any], message: str) -> None:
    assert message in template(helm, values, fail=True)


def test_single_replica_needs_the_budget_off(helm: str) -> None:
    objects = template(helm, {"deployment": {"replicas": 1}, "podDisruptionBudget": {"enabled": False}})
    assert "PodDisruptionBudget" not in kinds(objects)


# ------------------------------------------------------------------------------------------- the image


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_shape() -> None:
    steps = dockerfile_instructions()
    known = {"ARG", "FROM", "ENV", "WORKDIR", "COPY", "RUN", "LABEL", "USER", "EXPOSE", "ENTRYPOINT"}
    assert {i for i, _ in steps} <= known
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in steps if i == "ARG" and "=" in a}
    assert args["BUILDER"] == "python:3.11-slim-bookworm"  # same glibc line (2.36) as distroless debian12
    assert args["RUNTIME"] == "gcr.io/distroless/python3-debian12:nonroot"  # Python 3.11
    froms = [a for i, a in steps if i == "FROM"]
    assert froms == ["${BUILDER} AS build", "${RUNTIME}"]
    final = steps[[i for i, _ in steps].index("FROM", [i for i, _ in steps].index("FROM") + 1) :]
    # The final stage runs nothing (no shell there) and only copies the built /app.
    assert [i for i, _ in final if i == "RUN"] == []
    assert [a for i, a in final if i == "COPY"] == ["--from=build /app /app"]
    assert ("USER", "65532:65532") in final
    entrypoint = json.loads(dict(final)["ENTRYPOINT"])
    assert entrypoint == ["/usr/bin/python3.11", "-m", "webhook", "serve"]
    env = " ".join(a for i, a in final if i == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONPATH=/app" in env
    build = " ".join(a for i, a in steps if i == "RUN")
    assert "pip wheel --no-deps --wheel-dir /wheels ." in build
    assert "--only-binary=:all:" in build and "compileall" in build and "unchecked-hash" in build
    assert "rm -rf /app/bin" in build


def test_docker_build_context_is_an_allowlist_without_keys() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = [line[1:] for line in lines if line.startswith("!")]
    assert allowed == ["pyproject.toml", "README.md", "webhook/"]
    copied = [a for i, a in dockerfile_instructions() if i == "COPY" and not a.startswith("--from")]
    assert copied == ["pyproject.toml README.md ./", "webhook ./webhook"]
    for path in [REPO / "pyproject.toml", REPO / "README.md", *(REPO / "webhook").rglob("*")]:
        if path.is_file() and "__pycache__" not in path.parts:
            assert b"PRIVATE KEY-----" not in path.read_bytes(), f"key material in the build context: {path}"


AUDIT_WRITES = r"""
import os, runpy, sys
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return  # an fd we already hold (memfd)
        if (isinstance(mode, str) and set(mode) & set("wax+")) or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            print("WRITE", path, file=sys.stderr, flush=True)
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.chmod", "tempfile.mkstemp", "tempfile.mkdtemp"):
        print("WRITE", event, args, file=sys.stderr, flush=True)
sys.addaudithook(hook)
sys.argv = ["webhook", *sys.argv[1:]]
runpy.run_module("webhook", run_name="__main__")
"""


def test_server_writes_no_files_so_a_read_only_root_works(tmp_path: Path) -> None:
    """The chart sets readOnlyRootFilesystem and the image PYTHONDONTWRITEBYTECODE: serving, answering
    reviews, /metrics and a certificate reload must not open any file for writing."""
    import httpx

    ca = certs.generate_ca("ro-ca")
    first = certs.issue_serving_cert(ca, "svc", "ns", ips=["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(first.cert_pem)
    (tmp_path / "tls.key").write_bytes(first.key_pem)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", AUDIT_WRITES, "serve", "--host", "127.0.0.1", "--port", str(port), "--example-nodes",
         "--cert-file", str(tmp_path / "tls.crt"), "--key-file", str(tmp_path / "tls.key")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    verify = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    try:
        with httpx.Client(verify=verify, base_url=f"https://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server did not become ready"
                time.sleep(0.1)
            review = json.loads((REPO / "examples" / "reviews" / "hostpath-pod.json").read_text())
            assert client.post("/mutate", json=review).json()["response"]["allowed"] is True
            assert client.post("/validate", json=review).status_code == 200
            assert client.get("/metrics").status_code == 200
            second = certs.issue_serving_cert(ca, "svc", "ns", ips=["127.0.0.1"])
            (tmp_path / "tls.key").write_bytes(second.key_pem)
            (tmp_path / "tls.crt").write_bytes(second.cert_pem)
            time.sleep(3)  # the reloader checks every 2 s
            assert client.get("/healthz").status_code == 200
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    writes = [line for line in stderr.splitlines() if line.startswith("WRITE")]
    assert writes == [], writes


# -------------------------------------------------------------------------------------------- the kind recipe


# kubelet --node-labels: the kubernetes.io and k8s.io domains (and subdomains) are refused except these.
KUBELET_ALLOWED = {
    "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type", "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch", "kubernetes.io/hostname", "kubernetes.io/os", "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
}  # fmt: skip


def kind_nodes() -> list[dict[str, Any]]:
    """Node objects as the kind cluster would register them (labels from cluster.yaml)."""
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    nodes, workers = [], 0
    for node in cluster["nodes"]:
        assert set(node) <= {"role", "labels"}
        if node["role"] == "control-plane":
            name, labels = "immutable-os-control-plane", {"node-role.kubernetes.io/control-plane": ""}
            taints = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
        else:
            workers += 1
            name = "immutable-os-worker" + ("" if workers == 1 else str(workers))
            labels, taints = dict(node.get("labels") or {}), []
        labels.update({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"})
        nodes.append({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"nodeInfo": {"osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.8.0-1-generic"}},
        })  # fmt: skip
    return nodes


def test_kind_cluster_labels_are_allowed_for_kubelet_self_labelling() -> None:
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    skus = []
    for node in cluster["nodes"]:
        for key in node.get("labels") or {}:
            domain = key.split("/", 1)[0] if "/" in key else ""
            restricted = any(domain == d or domain.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
            assert not restricted or key in KUBELET_ALLOWED, f"kubelet refuses --node-labels {key}"
        skus.append((node.get("labels") or {}).get("kubernetes.azure.com/os-sku"))
    assert skus == [None, "Ubuntu", "Ubuntu", "AzureLinux", "AzureLinux"], (
        "os-sku holds the family on ACL and OS Guard"
    )
    requested = [
        (n.get("labels") or {}).get("kubernetes.azure.com/os-sku-requested") for n in cluster["nodes"][1:]
    ]
    assert requested == ["Ubuntu", "Ubuntu", "AzureContainerLinux", "AzureLinuxOSGuard"]


def _matches(labels: Mapping[str, str], expression: Mapping[str, Any]) -> bool:
    key, op, values = expression["key"], expression["operator"], expression.get("values", [])
    return {
        "In": key in labels and labels[key] in values,
        "NotIn": key not in labels or labels[key] not in values,
        "Exists": key in labels,
        "DoesNotExist": key not in labels,
    }[op]


def test_the_webhook_pods_may_land_on_any_worker_they_need_no_host_access(helm: str) -> None:
    pod = one(template(helm), "Deployment")["spec"]["template"]["spec"]
    assert "nodeAffinity" not in pod.get("affinity", {})
    assert not any(v.get("hostPath") for v in pod.get("volumes", [])) and not pod.get("hostNetwork")


def test_demo_manifests_show_a_denial_a_warning_and_a_steered_pod(tmp_path: Path) -> None:
    """The offline `check` on the kind cluster's nodes gives what demo.sh shows (the e2e test gives it
    through a real apiserver)."""
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": kind_nodes()}))
    namespaces = {
        d["metadata"]["name"]: d["metadata"].get("labels", {})
        for d in yaml.safe_load_all((DEMO / "namespaces.yaml").read_text())
    }
    labels = tmp_path / "namespaces.yaml"
    labels.write_text(yaml.safe_dump(namespaces))
    assert namespaces == {"demo-enforce": {}, "demo-warn": {"immutable-os.io/mode": "warn"}}

    def check(namespace: str, manifest: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "webhook", "check", "-o", "json", "--nodes", str(nodes),
             "--namespace-labels", str(labels), "--namespace", namespace, str(DEMO / manifest)],
            capture_output=True, text=True, cwd=REPO, check=False,
        )  # fmt: skip
        (result,) = json.loads(out.stdout)["results"]
        assert isinstance(result, dict)
        return result

    denied = check("demo-enforce", "tool-installer-on-acl.yaml")
    assert denied["verdict"] == "denied" and "breaks on every pool it can land on" in denied["message"]
    assert "/usr is read-only (dm-verity) on Azure Container Linux" in denied["message"]
    warned = check("demo-warn", "node-agent-on-osguard.yaml")
    assert warned["verdict"] == "warned" and warned["patch"] == []
    assert any("would be denied in enforce mode" in w for w in warned["warnings"])
    steered = check("demo-enforce", "tool-installer.yaml")
    assert steered["verdict"] == "steered" and steered["breaksOn"] == ["acl", "osguard"]
    untouched = check("demo-enforce", "log-reader.yaml")
    assert (
        untouched["verdict"] == "allowed"
        and untouched["patch"] == []
        and "immutable:acl" in untouched["landsOn"]
    )
    for manifest in DEMO.glob("*.yaml"):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc["kind"] == "Pod":
                assert "namespace" not in doc["metadata"], "demo.sh and the e2e test choose the namespace"


def host_access_condition(helm: str, kind: str, values: dict[str, Any] | None = None) -> str | None:
    found = hooks(template(helm, values or {}))
    conditions = {
        c["name"]: c["expression"] for c in found[f"{kind}.immutable-os.io"].get("matchConditions", [])
    }
    return conditions.get("host-access")


def test_host_access_condition_follows_the_checks_and_the_template_path(helm: str) -> None:
    pods = host_access_condition(helm, "pods")
    assert pods is not None and pods.startswith("[object.spec].exists(s, ")
    for field in ("s.hostPID", "s.hostIPC", "s.hostNetwork", "has(v.hostPath)"):
        assert field in pods
    assert "privileged" not in pods  # the privileged check is off by default
    workloads = host_access_condition(helm, "workloads")
    assert workloads is not None
    for path in (
        "object.spec.template.spec",
        "object.spec.jobTemplate.spec.template.spec",
        "object.template.spec",
    ):
        assert path in workloads
    with_privileged = host_access_condition(
        helm, "pods", {"config": {"checks": {"privileged": {"enabled": True}}}}
    )
    assert with_privileged is not None
    assert all(
        f"s.{c}.exists(c, " in with_privileged
        for c in ("containers", "initContainers", "ephemeralContainers")
    )
    assert "privileged" in (
        host_access_condition(helm, "pods", {"config": {"checks": {"privileged": True}}}) or ""
    )
    assert host_access_condition(helm, "pods", {"webhook": {"skipPodsWithoutHostAccess": False}}) is None


# ----------------------------------------------------------------- generated from the code, not kept by hand


def test_the_chart_parts_the_code_defines_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(REPO / "hack" / "generate-chart.py"), "--check"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


SCHEMA_CASES: list[Any] = [
    None, {}, RICH_CONFIG, {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND, "mode": "audit"},
    {"profiles": {"azure-linux-osguard": {"hostContract": {"codeIntegrity": "enforce", "volatile": ["/var/tmp"]}},
                  "myos": {"osImagePrefixes": ["MyOS"], "hostContract": {"readOnly": ["/"]}}},
     "steering": {"daemonSets": "warn"}, "immutableNodeSelectors": [{"matchLabels": {"a": "b"}, "profile": "flatcar"}]},
    {"apiVersion": "config.immutable-os.io/v2"}, {"kind": "Other"}, {"mdoe": "warn"}, {"mode": "strict"},
    {"checks": {"host-pids": True}}, {"checks": {"host-pid": {"severity": "fatal"}}},
    {"allowedHostPaths": [{"pathPrefix": "var/log"}]}, {"profiles": {"myos": {}}},
    {"profiles": {"flatcar": {"hostContract": {"readonly": ["/x"]}}}},
    {"profiles": {"flatcar": {"hostContract": {"hostNamespaces": "fails"}}}},
    {"profiles": {"flatcar": {"hostContract": {"readOnly": ["usr"]}}}},
    {"immutableNodeSelectors": [{}]}, {"steering": {"daemonSets": "skip"}}, {"onInternalError": "ignore"},
    {"maxInventoryStalenessSeconds": -1}, {"exemptions": {"namespaces": "kube-system"}},
]  # fmt: skip


@pytest.mark.parametrize("config", SCHEMA_CASES, ids=[json.dumps(c)[:60] for c in SCHEMA_CASES])
def test_the_schema_and_the_validator_agree(config: Any) -> None:
    """What helm accepts under `config` the webhook accepts, and what helm rejects it rejects."""
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    schema_ok = jsonschema.Draft7Validator(schema).is_valid(config if config is not None else {})
    try:
        Config.from_dict(config)
        validator_ok = True
    except ConfigError:
        validator_ok = False
    assert schema_ok == validator_ok


# ------------------------------------------------------------------------- the periodic scan (reports)

REPORTS = f"{FULLNAME}-reports"
READ_WORKLOADS = [
    {"apiGroups": [""], "resources": ["nodes", "namespaces", "pods", "replicationcontrollers", "podtemplates"],
     "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "verbs": ["get", "list"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list"]},
]  # fmt: skip


def scan_container(objects: Objects) -> dict[str, Any]:
    cron = one(objects, "CronJob")
    (c,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_the_never_judged_namespaces_come_from_the_code(helm: str) -> None:
    from webhook.core.config import SYSTEM_NAMESPACES

    for hook in hooks(template(helm, {"webhook": {"excludeNamespaces": ["monitoring"]}})).values():
        (exclusion,) = hook["namespaceSelector"]["matchExpressions"]
        assert exclusion["values"] == [*SYSTEM_NAMESPACES, NAMESPACE, "monitoring"]
    text = (CHART / "templates" / "_namespaces.tpl").read_text()
    assert json.dumps(list(SYSTEM_NAMESPACES)) in text and "hack/generate-chart.py" in text


def test_reports_are_off_by_default(helm: str) -> None:
    objects = template(helm)
    assert "CronJob" not in kinds(objects) and [
        o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"
    ] == [FULLNAME]


@pytest.mark.parametrize(("format_", "group", "resource"),
                         [("policyreport", "wgpolicyk8s.io", "policyreports"), ("openreports", "openreports.io", "reports")])  # fmt: skip
def test_reports_cron_job_runs_scan_apply_with_least_privilege(
    helm: str, format_: str, group: str, resource: str
) -> None:
    values = {
        "reports": {
            "enabled": True,
            "format": format_,
            "assumeImmutable": ["user=flatcar"],
            "schedule": "*/20 * * * *",
        }
    }
    objects = template(helm, values)
    role = one(objects, "ClusterRole", REPORTS)
    assert role["rules"] == [*READ_WORKLOADS, {"apiGroups": [group], "resources": [resource], "verbs": ["list"]},
                             {"apiGroups": [group], "resources": [resource], "resourceNames": [FULLNAME],
                              "verbs": ["get", "create", "patch", "delete"]}]  # fmt: skip
    binding = one(objects, "ClusterRoleBinding", REPORTS)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": REPORTS, "namespace": NAMESPACE}]
    assert one(objects, "ServiceAccount", REPORTS)["metadata"]["namespace"] == NAMESPACE

    cron = one(objects, "CronJob")
    assert cron["spec"]["schedule"] == "*/20 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    c = scan_container(objects)
    # The image's own interpreter, running `scan` instead of the entrypoint's `serve`.
    (entrypoint,) = [json.loads(args) for name, args in dockerfile_instructions() if name == "ENTRYPOINT"]
    assert c["command"] == [*entrypoint[:3], "scan"] and c["image"] == container(objects)["image"]
    parsed = build_parser().parse_args(c["command"][3:] + c["args"])
    assert (parsed.command, parsed.output, parsed.apply, parsed.fail_on) == ("scan", format_, True, "never")
    assert parsed.report_name == FULLNAME and parsed.assume_immutable == ["user=flatcar"]
    assert parsed.kubeconfig is None and not parsed.include_system_namespaces  # in-cluster; as installed
    assert c["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    ]
    assert pod["spec"]["serviceAccountName"] == REPORTS and pod["spec"]["restartPolicy"] == "Never"
    assert c["securityContext"] == container(objects)["securityContext"]
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {str(Path(parsed.values).parent)}
    # Its pods are not the webhook's: no Service, PDB or Deployment selects them.
    selector = one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items()


def test_reports_read_the_same_config_and_exclusions_as_the_webhook(helm: str) -> None:
    from webhook.adapters.files import read_values
    from webhook.core.scope import installed_scope

    values = {"reports": {"enabled": True}, "config": RICH_CONFIG,
              "webhook": {"excludeNamespaces": ["monitoring"], "namespaceSelector": {"matchLabels": {"team": "a"}}}}  # fmt: skip
    objects = template(helm, values)
    scan_values = one(objects, "ConfigMap", REPORTS)["data"]["values.yaml"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(scan_values)
        f.flush()
        loaded = read_values(f.name)
    assert loaded.config == Config.from_dict(
        rendered_config([o for o in objects if o["metadata"]["name"] == FULLNAME])
    )
    scope = installed_scope(NAMESPACE, loaded.webhook_values)
    assert scope.excluded == ("kube-system", NAMESPACE, "monitoring")
    assert (
        scope.unseen("apps", {}, {}) == "webhook.namespaceSelector"
        and scope.unseen("apps", {"team": "a"}, {}) == ""
    )


def test_the_schema_rejects_a_bad_reports_value(helm: str) -> None:
    assert "reports" in template(helm, {"reports": {"format": "kyverno"}}, fail=True)
    assert "reports" in template(helm, {"reports": {"assumeImmutable": ["=flatcar"]}}, fail=True)
