"""Test builders: one minimal pod and its tweaks, AKS-labelled node pools, AdmissionReviews."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from tests import aks
from webhook.core.config import Config
from webhook.core.placement import Inventory, Node
from webhook.core.placement.selectors import Taint
from webhook.core.review import Request

OS_SKU = aks.OS_SKU


def minimal_pod(name: str = "app", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]},
    }


Tweak = Callable[[dict[str, Any]], None]


def tweak(*changes: Tweak, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The minimal pod with `changes` applied to its spec, in order."""
    pod = copy.deepcopy(base or minimal_pod())
    for change in changes:
        change(pod["spec"])
    return pod


def host_path(path: str, *, read_only: bool = False, name: str = "host", container: str = "containers",
              propagation: str | None = None) -> Tweak:  # fmt: skip
    def change(spec: dict[str, Any]) -> None:
        spec.setdefault("volumes", []).append({"name": name, "hostPath": {"path": path}})
        mount: dict[str, Any] = {"name": name, "mountPath": "/host" + path, "readOnly": read_only}
        if propagation:
            mount["mountPropagation"] = propagation
        target = spec.setdefault(container, [])
        if not target:
            target.append({"name": f"{container}-0", "image": "busybox:1.36"})
        target[0].setdefault("volumeMounts", []).append(mount)

    return change


def set_field(key: str, value: Any) -> Tweak:
    def change(spec: dict[str, Any]) -> None:
        spec[key] = value

    return change


def required_terms(*terms: dict[str, Any]) -> Tweak:
    return set_field(
        "affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        },
    )


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": key, "operator": operator}
    if values or operator in ("In", "NotIn", "Gt", "Lt"):
        e["values"] = list(values)
    return e


def wrap(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    """The pod as the template of a workload kind."""
    template = {"metadata": {"labels": {"app": "x"}}, "spec": pod["spec"]}
    meta = dict(pod["metadata"])
    if kind == "Pod":
        return pod
    if kind == "CronJob":
        spec: dict[str, Any] = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    else:
        spec = {"selector": {"matchLabels": {"app": "x"}}, "template": template}
    group = {"Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1"}.get(kind, "apps/v1")
    return {"apiVersion": group, "kind": kind, "metadata": meta, "spec": spec}


def aks_pool(pool: str, os_sku: str, count: int = 2, *, taints: tuple[Taint, ...] = (),
             extra: Mapping[str, str] | None = None, scenario: str = "name", zones: int = 1) -> list[Node]:  # fmt: skip
    """`count` nodes of an AKS pool of this `--os-sku` (see tests/aks.py for `scenario`)."""
    return aks.nodes(
        pool, os_sku, count, scenario=scenario, zones=zones, taints=taints, extra=dict(extra or {})
    )


def mixed_inventory(config: Config | None = None) -> Inventory:
    """A general Ubuntu pool and a Flatcar pool, two nodes each."""
    return Inventory.build(
        [*aks_pool("general", "Ubuntu"), *aks_pool("flatcar", "Flatcar")], config or Config()
    )


# The AKS-shaped cluster of the corpus and the steering tests: two general pools, three immutable ones.
AKS_POOLS = (("system", "Ubuntu", 3), ("azlinux", "AzureLinux", 2), ("acl", "AzureContainerLinux", 3),
             ("osguard", "AzureLinuxOSGuard", 2), ("flatcar", "Flatcar", 2))  # fmt: skip


def aks_nodes(scenario: str = "family", zones: int = 3) -> list[Node]:
    return [
        n
        for pool, sku, count in AKS_POOLS
        for n in aks_pool(pool, sku, count, scenario=scenario, zones=zones)
    ]


def aks_inventory(scenario: str = "family", config: Config | None = None, zones: int = 3) -> Inventory:
    return Inventory.build(aks_nodes(scenario, zones), config or Config())


def request_for(obj: dict[str, Any], *, operation: str = "CREATE", username: str = "alice",
                groups: tuple[str, ...] = ("system:authenticated",), sub_resource: str = "",
                namespace: str | None = None) -> Request:  # fmt: skip
    return Request(
        uid="uid-1",
        operation=operation,
        kind=obj["kind"],
        sub_resource=sub_resource,
        namespace=namespace or obj["metadata"].get("namespace", "default"),
        name=obj["metadata"].get("name", ""),
        username=username,
        groups=frozenset(groups),
        dry_run=False,
        object=obj,
    )


def review_for(obj: dict[str, Any] | None, *, kind: str | None = None, operation: str = "CREATE",
               uid: str = "0c6a2c4e-1111-2222-3333-444455556666", sub_resource: str | None = None,
               username: str = "alice", groups: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    kind = kind or (obj or {}).get("kind", "Pod")
    group, _, version = (obj or {}).get("apiVersion", "v1").rpartition("/")
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "operation": operation,
        "namespace": (obj or {}).get("metadata", {}).get("namespace", "default"),
        "name": (obj or {}).get("metadata", {}).get("name", ""),
        "userInfo": {"username": username, "groups": groups or ["system:authenticated"]},
        "object": obj,
        "dryRun": False,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
