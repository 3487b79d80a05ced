"""Which documents of a manifest set are workloads the webhook judges, and which are other objects to skip.

A workload kind is judged under the one apiVersion the apiserver serves it at (`apps/v1` DaemonSet); any
other version of a built-in group is an error naming the fix. Any other kind is skipped, except a kind that
only a typo can explain: in a built-in group without a dot (core, `apps`, `batch`, ...) a kind that is not
served there but is close to a workload kind (`Daemonset`, `deployment`) is an error with a did-you-mean.
Groups with a dot hold custom resources (and built-ins such as rbac.authorization.k8s.io): any kind may
live there, so an `apps.kruise.io` DaemonSet is skipped, not judged (its pods are judged in the cluster).
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.workloads import POD_TEMPLATE_PATHS
from webhook.errors import ManifestError

# The apiVersion each judged kind is served at (the webhook's rules list exactly these).
WORKLOAD_API_VERSIONS: Mapping[str, str] = {
    "Pod": "v1",
    "ReplicationController": "v1",
    "PodTemplate": "v1",
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
assert set(WORKLOAD_API_VERSIONS) == set(POD_TEMPLATE_PATHS)

# Versions that once served a workload kind, and the Kubernetes release that stopped serving them.
REMOVED_IN = {"extensions/v1beta1": "1.16", "apps/v1beta1": "1.16", "apps/v1beta2": "1.16",
              "batch/v1beta1": "1.25", "batch/v2alpha1": "1.21"}  # fmt: skip

# Kinds of the dot-less built-in groups that are not workloads: never mistaken for a typo of one.
BUILTIN_KINDS = frozenset({
    "Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange", "Namespace", "Node",
    "PersistentVolume", "PersistentVolumeClaim", "ResourceQuota", "Secret", "Service", "ServiceAccount",
    "ControllerRevision", "HorizontalPodAutoscaler", "Scale", "PodDisruptionBudget", "Eviction",
    "PodSecurityPolicy", "Ingress", "NetworkPolicy", "List",
})  # fmt: skip
SIMILARITY = 0.8  # difflib ratio, case-insensitive, from which an unknown kind reads as a typo


class Role(enum.Enum):
    WORKLOAD = "workload"  # judged
    OTHER = "other"  # a Kubernetes object of another kind: skipped, counted by kind
    NOT_AN_OBJECT = "not an object"  # no kind and no metadata (values.yaml, Chart.yaml): skipped, counted


@dataclass(frozen=True)
class Classified:
    role: Role
    kind: str = ""
    label: str = ""  # how the summary names the kind: `Kind`, or `Kind.group` where a workload kind
    # lives in another group (an `apps.kruise.io` DaemonSet)


def describe(label: str, obj: Any) -> str:
    """A document's label with its kind and name when it has them (`f.yaml document 3 (DaemonSet ns/x)`):
    what an error about it names."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        return label
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    where = f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name
    kind = obj.get("kind")
    return f"{label} ({kind} {where})" if isinstance(kind, str) and kind else f"{label} ({where})"


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _did_you_mean(kind: str) -> str | None:
    by_lower = {k.lower(): k for k in WORKLOAD_API_VERSIONS}
    match = difflib.get_close_matches(kind.lower(), list(by_lower), n=1, cutoff=SIMILARITY)
    return by_lower[match[0]] if match else None


def classify(obj: Any) -> Classified:
    """What a parsed document is for `check`; ManifestError (field `kind` or `apiVersion`) for what the
    apiserver would refuse and the webhook would then never see: a typo'd kind, a version that does not
    serve it. A document that is no mapping (a list, a string) is no object."""
    if not isinstance(obj, Mapping):
        return Classified(Role.NOT_AN_OBJECT)
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind is None or kind == "":
        if "metadata" in obj:
            raise ManifestError("missing kind", field="kind", fix="set kind: Pod, Deployment, ...")
        return Classified(Role.NOT_AN_OBJECT)
    if not isinstance(kind, str):
        raise ManifestError(f"expected a string, got {kind!r}", field="kind", fix="e.g. kind: DaemonSet")
    if api_version is not None and not isinstance(api_version, str):
        raise ManifestError(f"expected a string, got {api_version!r}", field="apiVersion",
                            fix="e.g. apiVersion: apps/v1")  # fmt: skip
    group = _group(api_version or "")
    served = WORKLOAD_API_VERSIONS.get(kind)
    if served is not None:
        if "." in group:
            return Classified(Role.OTHER, kind, f"{kind}.{group}")
        if api_version == served:
            return Classified(Role.WORKLOAD, kind, kind)
        if not api_version:
            raise ManifestError(f"missing apiVersion for kind {kind}", field="apiVersion",
                                fix=f"set apiVersion: {served}")  # fmt: skip
        removed = REMOVED_IN.get(api_version)
        why = f" (removed in Kubernetes {removed})" if removed else ""
        raise ManifestError(f"{api_version} does not serve {kind}{why}", field="apiVersion",
                            fix=f"use apiVersion: {served}")  # fmt: skip
    if "." not in group and kind not in BUILTIN_KINDS:
        guess = _did_you_mean(kind)
        if guess is not None:
            fix = f"kind: {guess} (apiVersion: {WORKLOAD_API_VERSIONS[guess]})"
            raise ManifestError(f"unknown kind {kind!r}: did you mean {guess}?", field="kind", fix=fix)
    return Classified(Role.OTHER, kind, kind)
