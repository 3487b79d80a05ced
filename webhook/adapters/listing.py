"""`scan`: list the live cluster's nodes, namespaces and workloads, and report what the webhook would do.

Read-only: list calls only (get/list on the workload kinds besides the webhook's nodes and namespaces).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes.client

from webhook.errors import ConfigError

WireObject = dict[str, Any]


@dataclass(frozen=True)
class ClusterObjects:
    nodes: list[WireObject]
    namespaces: dict[str, dict[str, str]]
    workloads: list[WireObject]


def _items(call: Callable[..., Any], kind: str, api_version: str, **kw: Any) -> list[WireObject]:
    response = call(_preload_content=False, **kw)
    document = json.loads(response.data)
    items: list[WireObject] = document.get("items") or []
    for item in items:  # list items come without kind and apiVersion
        item.setdefault("kind", kind)
        item.setdefault("apiVersion", api_version)
    return items


def collect(api: kubernetes.client.ApiClient, namespace: str | None = None) -> ClusterObjects:
    core = kubernetes.client.CoreV1Api(api)
    apps = kubernetes.client.AppsV1Api(api)
    batch = kubernetes.client.BatchV1Api(api)
    workload_lists: list[tuple[Any, str, str, str]] = [
        (core, "pod", "Pod", "v1"),
        (core, "replication_controller", "ReplicationController", "v1"),
        (core, "pod_template", "PodTemplate", "v1"),
        (apps, "deployment", "Deployment", "apps/v1"),
        (apps, "replica_set", "ReplicaSet", "apps/v1"),
        (apps, "stateful_set", "StatefulSet", "apps/v1"),
        (apps, "daemon_set", "DaemonSet", "apps/v1"),
        (batch, "job", "Job", "batch/v1"),
        (batch, "cron_job", "CronJob", "batch/v1"),
    ]
    workloads = []
    for client, resource, kind, api_version in workload_lists:
        if namespace:
            call = getattr(client, f"list_namespaced_{resource}")
            workloads += _items(call, kind, api_version, namespace=namespace)
        else:
            workloads += _items(getattr(client, f"list_{resource}_for_all_namespaces"), kind, api_version)
    namespaces = {
        ns["metadata"]["name"]: dict(ns["metadata"].get("labels") or {})
        for ns in _items(core.list_namespace, "Namespace", "v1")
    }
    return ClusterObjects(_items(core.list_node, "Node", "v1"), namespaces, workloads)


def parse_assumptions(values: list[str]) -> dict[str, str]:
    """`--assume-immutable POOL=PROFILE` (PROFILE defaults to `immutable`)."""
    pools = {}
    for value in values:
        pool, _, profile = value.partition("=")
        if not pool:
            raise ConfigError(
                f"{value!r} names no pool", field="--assume-immutable", fix="e.g. userpool=flatcar"
            )
        pools[pool] = profile or "immutable"
    return pools
