"""Which documents `check` judges: workload kinds at the version that serves them; other kinds skipped;
typos (`Daemonset`, `app/v1`) refused with the fix, custom resources never mistaken for typos."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.core.manifests import WORKLOAD_API_VERSIONS, Role, classify, describe
from webhook.core.workloads import SUPPORTED_KINDS
from webhook.errors import ManifestError


def obj(api_version: str | None, kind: str | None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"metadata": {"name": "x"}, **extra}
    if api_version is not None:
        doc["apiVersion"] = api_version
    if kind is not None:
        doc["kind"] = kind
    return doc


def test_every_judged_kind_has_the_version_the_webhook_rules_name() -> None:
    assert sorted(WORKLOAD_API_VERSIONS) == sorted(SUPPORTED_KINDS)
    for kind, version in WORKLOAD_API_VERSIONS.items():
        assert classify(obj(version, kind)).role is Role.WORKLOAD, kind


SKIPPED = [
    ("v1", "ConfigMap", "ConfigMap"), ("v1", "Service", "Service"), ("v1", "Namespace", "Namespace"),
    ("policy/v1", "PodDisruptionBudget", "PodDisruptionBudget"), ("apps/v1", "ControllerRevision", "ControllerRevision"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "ValidatingWebhookConfiguration"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "ClusterRole"),
    # custom resources: any kind, even a workload's name or one close to it, in a group with a dot
    ("apps.kruise.io/v1alpha1", "DaemonSet", "DaemonSet.apps.kruise.io"),
    ("argoproj.io/v1alpha1", "Rollout", "Rollout"), ("example.com/v1", "Deploymnet", "Deploymnet"),
    # a built-in group's kind this table does not know, and nothing like a workload
    ("v1", "Endpoints", "Endpoints"), ("autoscaling/v2", "HorizontalPodAutoscaler", "HorizontalPodAutoscaler"),
]  # fmt: skip


@pytest.mark.parametrize(("api_version", "kind", "label"), SKIPPED, ids=[f"{a} {k}" for a, k, _ in SKIPPED])
def test_other_kinds_are_skipped_and_named_for_the_summary(api_version: str, kind: str, label: str) -> None:
    result = classify(obj(api_version, kind))
    assert (result.role, result.label) == (Role.OTHER, label)


REFUSED = [
    ("typo'd kind", obj("apps/v1", "Daemonset"), "kind", "unknown kind 'Daemonset': did you mean DaemonSet?",
     "kind: DaemonSet (apiVersion: apps/v1)"),
    ("lower-case kind", obj("apps/v1", "deployment"), "kind", "did you mean Deployment?", "kind: Deployment"),
    ("plural kind", obj("batch/v1", "CronJobs"), "kind", "did you mean CronJob?", "apiVersion: batch/v1"),
    ("typo'd group", obj("app/v1", "DaemonSet"), "apiVersion", "app/v1 does not serve DaemonSet",
     "use apiVersion: apps/v1"),
    ("wrong group", obj("v1", "Deployment"), "apiVersion", "v1 does not serve Deployment", "use apiVersion: apps/v1"),
    ("removed version", obj("extensions/v1beta1", "DaemonSet"), "apiVersion",
     "extensions/v1beta1 does not serve DaemonSet (removed in Kubernetes 1.16)", "use apiVersion: apps/v1"),
    ("removed CronJob version", obj("batch/v1beta1", "CronJob"), "apiVersion", "(removed in Kubernetes 1.25)",
     "use apiVersion: batch/v1"),
    ("no apiVersion", obj(None, "Pod"), "apiVersion", "missing apiVersion for kind Pod", "set apiVersion: v1"),
    ("no kind", obj("v1", None), "kind", "missing kind", "set kind"),
    ("kind not a string", obj("v1", ["Pod"]), "kind", "expected a string", "kind: DaemonSet"),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "field", "message", "fix"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_what_the_apiserver_would_refuse_is_an_error_naming_field_and_fix(
    doc: dict[str, Any], field: str, message: str, fix: str
) -> None:
    with pytest.raises(ManifestError) as err:
        classify(doc)
    assert err.value.field == field and message in err.value.message and fix in err.value.fix


@pytest.mark.parametrize("doc", [["a", "list"], "a string", 3, {"name": "chart", "version": "1.0"}, {"apiVersion": "v2"}],
                         ids=["list", "string", "number", "values.yaml", "Chart.yaml"])  # fmt: skip
def test_documents_without_kind_or_metadata_are_not_objects(doc: Any) -> None:
    assert classify(doc).role is Role.NOT_AN_OBJECT


def test_describe_names_kind_and_object() -> None:
    assert describe("f.yaml document 2", obj("apps/v1", "DaemonSet")) == "f.yaml document 2 (DaemonSet x)"
    namespaced = {"kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}
    assert describe("f.yaml document 1", namespaced) == "f.yaml document 1 (Pod n/p)"
    assert describe("f.yaml document 1", {"metadata": {}}) == "f.yaml document 1"
    assert describe("f.yaml document 1", ["x"]) == "f.yaml document 1"
