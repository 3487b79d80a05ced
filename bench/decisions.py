"""Decisions per second of the pure core (no HTTP, no JSON decoding), over AKS-like node inventories.

Times `decide` (mutate, apply the patch, validate: what the apiserver makes us do per pod) and `answer` on
/validate alone, for a steered, a denied and a clean pod, and shows the cost does not grow with the
number of nodes per pool. Run: `.venv/bin/python bench/decisions.py [--quick] [--json]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webhook.core.admission import Endpoint, Outcome, Request, answer, decide
from webhook.core.config import Config
from webhook.core.mutation import apply_patch
from webhook.core.placement import Inventory, Node
from webhook.core.placement.selectors import Taint

SIZES = ((10, 3), (10, 20), (10, 200), (1_000, 3), (1_000, 20), (1_000, 200), (10_000, 3), (10_000, 20),
         (10_000, 200))  # fmt: skip
# AKS supports up to 5,000 nodes and 100 node pools per cluster, 1,000 nodes per pool.
REALISTIC = {(10, 3): "small cluster", (1_000, 3): "few big pools", (1_000, 20): "large cluster"}
ZONES = ("eastus2-1", "eastus2-2", "eastus2-3")
# os-sku -> (osImage, kernelVersion, node-image-version); every fourth pool immutable, in turn.
OS = {
    "Ubuntu": ("Ubuntu 22.04.5 LTS", "5.15.0-1089-azure", "AKSUbuntu-2204gen2containerd-202510.01.0"),
    "AzureLinux": ("CBL-Mariner/Linux", "6.6.92.2-2.azl3", "AKSAzureLinux-V3gen2-202510.01.0"),
    "Flatcar": (
        "Flatcar Container Linux by Kinvolk 4230.2.3 (Oklo)",
        "6.6.95-flatcar",
        "AKSFlatcar-flatcar-gen2-202510.01.0",
    ),
    "AzureLinuxOSGuard": ("CBL-Mariner/Linux", "6.6.92.2-2.azl3", "AKSAzureLinux-OSGuard-V3gen2-202510.01.0"),
    "AzureContainerLinux": (
        "Microsoft Azure Container Linux 4.0",
        "6.6.96.1-1.acl4",
        "AKSAzureContainerLinux-gen2-202510.01.0",
    ),
}
GENERAL_SKUS = ("Ubuntu", "AzureLinux")
IMMUTABLE_SKUS = ("Flatcar", "AzureLinuxOSGuard", "AzureContainerLinux")
VM_SIZES = ("Standard_D4s_v5", "Standard_D8s_v5", "Standard_E16s_v5", "Standard_NC6s_v3")


@dataclass(frozen=True)
class PoolSpec:
    name: str
    os_sku: str
    mode: str
    taints: tuple[Taint, ...]

    @property
    def immutable(self) -> bool:
        return self.os_sku in IMMUTABLE_SKUS


def pool_specs(count: int) -> list[PoolSpec]:
    """Pool 0 is the system pool (Ubuntu); pool 1 Flatcar; after that one in four is immutable; every
    fifth pool is tainted for a dedicated workload, every seventh prefers not to be scheduled on."""
    specs = []
    for i in range(count):
        if i == 0:
            sku = "Ubuntu"
        elif i == 1 or i % 4 == 1:
            sku = IMMUTABLE_SKUS[(i // 4) % len(IMMUTABLE_SKUS)]
        else:
            sku = GENERAL_SKUS[i % len(GENERAL_SKUS)]
        taints: tuple[Taint, ...] = ()
        if i and i % 5 == 0:
            taints = (Taint("workload", f"dedicated-{i}", "NoSchedule"),)
        elif i and i % 7 == 0:
            taints = (Taint("sku", "gpu", "PreferNoSchedule"),)
        name = "system" if i == 0 else f"{sku.lower()[:8]}{i}"
        specs.append(PoolSpec(name, sku, "system" if i == 0 else "user", taints))
    return specs


def aks_node(pool: PoolSpec, index: int, member: int) -> Node:
    os_image, kernel, image_version = OS[pool.os_sku]
    name = f"aks-{pool.name}-{10_000_000 + index * 7919:08d}-vmss{member:06x}"
    zone = ZONES[member % len(ZONES)]
    labels = {
        "agentpool": pool.name,
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": VM_SIZES[index % len(VM_SIZES)],
        "beta.kubernetes.io/os": "linux",
        "failure-domain.beta.kubernetes.io/region": "eastus2",
        "failure-domain.beta.kubernetes.io/zone": zone,
        "kubernetes.azure.com/agentpool": pool.name,
        "kubernetes.azure.com/cluster": "MC_rg-prod_aks-prod_eastus2",
        "kubernetes.azure.com/consolidated-additional-properties": "a1b2c3d4-0000-4000-8000-000000000000",
        "kubernetes.azure.com/kubelet-identity-client-id": "11111111-2222-3333-4444-555555555555",
        "kubernetes.azure.com/mode": pool.mode,
        "kubernetes.azure.com/network-policy": "cilium",
        "kubernetes.azure.com/node-image-version": image_version,
        "kubernetes.azure.com/nodepool-type": "VirtualMachineScaleSets",
        "kubernetes.azure.com/os-sku": pool.os_sku,
        "kubernetes.azure.com/role": "agent",
        "kubernetes.azure.com/storageprofile": "managed",
        "kubernetes.azure.com/storagetier": "Premium_LRS",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/role": "agent",
        "node-role.kubernetes.io/agent": "",
        "node.kubernetes.io/instance-type": VM_SIZES[index % len(VM_SIZES)],
        "storageprofile": "managed",
        "storagetier": "Premium_LRS",
        "topology.disk.csi.azure.com/zone": zone,
        "topology.kubernetes.io/region": "eastus2",
        "topology.kubernetes.io/zone": zone,
    }
    taints = pool.taints
    if member % 97 == 13:  # a few nodes are NotReady or cordoned right now: condition taints
        taints = (*taints, Taint("node.kubernetes.io/unschedulable", "", "NoSchedule"))
    return Node(name, labels, taints, os_image, kernel)


def aks_nodes(node_count: int, pool_count: int) -> tuple[list[Node], list[PoolSpec]]:
    specs = pool_specs(pool_count)
    nodes = [aks_node(specs[i % pool_count], i % pool_count, i // pool_count) for i in range(node_count)]
    return nodes, specs


def agent_pod(*, host_path: bool = True) -> dict[str, Any]:
    """A log/metrics agent pod as its DaemonSet controller creates it (minus the per-node affinity)."""
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.monitoring.svc:4317"},
        {"name": "GOMEMLIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
    ]
    probe = {"httpGet": {"path": "/healthz", "port": 2020}, "periodSeconds": 10, "failureThreshold": 3}
    mounts = [
        {"name": "config", "mountPath": "/fluent-bit/etc/"},
        {"name": "varlog", "mountPath": "/var/log", "readOnly": True},
        {"name": "state", "mountPath": "/var/fluent-bit/state"},
        {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
         "readOnly": True},
    ]  # fmt: skip
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": "log-agent-config", "defaultMode": 420}},
        {"name": "state", "emptyDir": {}},
        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]}},
    ]  # fmt: skip
    if host_path:
        # /var/log read, and /usr/local/bin written (the init container installs a CLI onto the node):
        # the write is what breaks on an immutable OS.
        volumes.append({"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}})
        volumes.append({"name": "host-bin", "hostPath": {"path": "/usr/local/bin", "type": "Directory"}})
    else:
        volumes.append({"name": "varlog", "emptyDir": {}})
    resources = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "log-agent-",
            "namespace": "monitoring",
            "labels": {
                "app.kubernetes.io/name": "log-agent",
                "app.kubernetes.io/instance": "log-agent",
                "app.kubernetes.io/component": "collector",
                "app.kubernetes.io/part-of": "observability",
                "controller-revision-hash": "6d9f7c8b5",
                "pod-template-generation": "7",
            },
            "annotations": {
                "checksum/config": "4f1c2a9e0b7d3e5f6a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "2020",
                "kubectl.kubernetes.io/default-container": "agent",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": "log-agent",
                    "uid": "0b6f5c1e-8f3a-4d0e-9a7b-2c1d3e4f5a6b",
                    "controller": True,
                    "blockOwnerDeletion": True,
                },
            ],
        },
        "spec": {
            "serviceAccountName": "log-agent",
            "priorityClassName": "system-node-critical",
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/arch",
                                        "operator": "In",
                                        "values": ["amd64", "arm64"],
                                    },
                                    {"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]},
                                ]
                            }
                        ],
                    }
                }
            },
            "tolerations": [
                {"operator": "Exists", "effect": "NoSchedule"},
                {"operator": "Exists", "effect": "NoExecute"},
                {"key": "CriticalAddonsOnly", "operator": "Exists"},
            ],
            "securityContext": {"runAsNonRoot": False, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [
                {
                    "name": "config-check",
                    "image": "cr.fluentbit.io/fluent/fluent-bit:3.2.4",
                    "command": ["/fluent-bit/bin/fluent-bit", "--dry-run", "-c", "/fluent-bit/etc/fb.yaml"],
                    "resources": resources,
                    "volumeMounts": mounts[:1]
                    + ([{"name": "host-bin", "mountPath": "/host/usr/local/bin"}] if host_path else []),
                }
            ],
            "containers": [
                {
                    "name": "agent",
                    "image": "cr.fluentbit.io/fluent/fluent-bit:3.2.4",
                    "args": ["--workdir=/fluent-bit/etc", "--config=/fluent-bit/etc/conf/fluent-bit.conf"],
                    "ports": [{"name": "http", "containerPort": 2020, "protocol": "TCP"}],
                    "env": env,
                    "resources": resources,
                    "livenessProbe": probe,
                    "readinessProbe": {**probe, "httpGet": {"path": "/api/v1/health", "port": 2020}},
                    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                    "volumeMounts": mounts,
                },
                {
                    "name": "metrics-exporter",
                    "image": "quay.io/prometheus/node-exporter:v1.8.2",
                    "args": ["--path.rootfs=/host", "--web.listen-address=:9100", "--collector.textfile"],
                    "ports": [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}],
                    "env": env[:2],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/", "port": 9100}, "periodSeconds": 15},
                    "volumeMounts": [mounts[1], mounts[3]],
                },
                {
                    "name": "config-reloader",
                    "image": "ghcr.io/jimmidyson/configmap-reload:v0.14.0",
                    "args": ["--volume-dir=/fluent-bit/etc/", "--webhook-url=http://localhost:2020/reload"],
                    "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                    "volumeMounts": [mounts[0], mounts[3]],
                },
            ],
            "volumes": volumes,
        },
    }


def pinned_pod(pool: PoolSpec) -> dict[str, Any]:
    """The agent pod, but with a nodeSelector that only an immutable pool satisfies."""
    pod = agent_pod()
    pod["spec"]["nodeSelector"]["kubernetes.azure.com/agentpool"] = pool.name
    return pod


def daemonset_pod(node: str) -> dict[str, Any]:
    """The agent pod as the DaemonSet controller really creates it: each term pinned with matchFields."""
    pod = agent_pod()
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    for term in terms["nodeSelectorTerms"]:
        term["matchFields"] = [{"key": "metadata.name", "operator": "In", "values": [node]}]
    return pod


def nowhere_pod() -> dict[str, Any]:
    """The agent pod with a per-node requirement no node meets (`hostname DoesNotExist`): the worst case,
    since no pool can be answered from its shared labels and no node ends the search early."""
    pod = agent_pod()
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    terms["nodeSelectorTerms"][0]["matchExpressions"].append(
        {"key": "kubernetes.io/hostname", "operator": "DoesNotExist"}
    )
    return pod


def avoiding_pod(node: str) -> dict[str, Any]:
    """The agent pod kept off one named node (`hostname NotIn`): a per-node label the pools cannot answer."""
    pod = agent_pod()
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    terms["nodeSelectorTerms"][0]["matchExpressions"].append(
        {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [node]}
    )
    return pod


def request_for(obj: dict[str, Any]) -> Request:
    return Request(
        uid="0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        operation="CREATE",
        kind=obj["kind"],
        sub_resource="",
        namespace=obj["metadata"]["namespace"],
        name="",
        username="system:serviceaccount:kube-system:daemon-set-controller",
        groups=frozenset(
            {"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}
        ),
        dry_run=False,
        object=obj,
    )


@dataclass(frozen=True)
class Case:
    name: str
    request: Request
    expected: tuple[bool, Outcome]  # decide: (steered by /mutate, outcome of /validate)
    what: str


def cases(nodes: list[Node], specs: list[PoolSpec]) -> list[Case]:
    immutable = next(p for p in specs if p.immutable)
    general_node = nodes[0].name  # pool 0 is the system pool, general
    return [
        Case("steered", request_for(agent_pod()), (True, Outcome.WORKS),
             "hostPath agent pod that could land on both classes"),
        Case("denied", request_for(pinned_pod(immutable)), (False, Outcome.DENIED),
             f"hostPath agent pod with nodeSelector agentpool={immutable.name} ({immutable.os_sku})"),
        Case("clean", request_for(agent_pod(host_path=False)), (False, Outcome.CLEAN),
             "the agent pod without hostPath"),
        Case("ds-pod", request_for(daemonset_pod(general_node)), (False, Outcome.WORKS),
             "extra: as the DaemonSet controller creates it, matchFields metadata.name In [a general node]"),
        Case("avoid", request_for(avoiding_pod(general_node)), (True, Outcome.WORKS),
             "extra: steered pod with kubernetes.io/hostname NotIn [one node] (per-node label)"),
        Case("no-node", request_for(nowhere_pod()), (False, Outcome.NOWHERE),
             "extra, worst case: kubernetes.io/hostname DoesNotExist, which no node meets"),
    ]  # fmt: skip


@dataclass(frozen=True)
class Budget:
    seconds: float  # per case: stop at this many seconds ...
    iterations: int  # ... or this many iterations, whichever comes first
    warmup: int
    rounds: int  # the budget is split into rounds; the fastest round is the least disturbed


@dataclass(frozen=True)
class Timing:
    best_us: float  # wall-clock (perf_counter) µs per call in the fastest round: the figure reported
    cpu_us: float  # process CPU µs per call in the fastest round: barely moved by other processes' load
    mean_us: float  # wall-clock µs per call over every round, interference included
    iterations: int


def time_interleaved(calls: Sequence[Callable[[], object]], budget: Budget) -> list[Timing]:
    """Time each call within the budget, taking rounds in turn: call 0, call 1, ..., call 0, ...

    Calls timed in turn share whatever load other processes put on the machine, so their ratio holds
    even when the absolute figures do not.
    """
    for call in calls:
        for _ in range(budget.warmup):
            call()
    per_round = max(1, budget.iterations // budget.rounds)
    round_seconds = budget.seconds / budget.rounds
    walls: list[list[float]] = [[] for _ in calls]
    cpus: list[list[float]] = [[] for _ in calls]
    totals = [[0, 0.0] for _ in calls]
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection landing in one round is noise, not the cost of a decision
    try:
        for _ in range(budget.rounds):
            for i, call in enumerate(calls):
                n, elapsed = 0, 0.0
                start, cpu_start = time.perf_counter(), time.process_time()
                while n < per_round and elapsed < round_seconds:
                    call()
                    n += 1
                    elapsed = time.perf_counter() - start
                cpus[i].append((time.process_time() - cpu_start) / n)
                walls[i].append(elapsed / n)
                totals[i][0] += n
                totals[i][1] += elapsed
                gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return [
        Timing(min(w) * 1e6, min(c) * 1e6, t[1] / t[0] * 1e6, int(t[0]))
        for w, c, t in zip(walls, cpus, totals, strict=True)
    ]


def inventory_memory(nodes: list[Node], config: Config) -> tuple[int, int]:
    """(retained, peak) bytes of building the inventory from nodes already in memory."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        inventory = Inventory.build(nodes, config)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del inventory
    return current - before, peak - before


@dataclass
class World:
    """One inventory and the requests timed against it."""

    row: dict[str, Any]
    context: dict[str, Any]
    cases: list[Case]


def build_world(node_count: int, pool_count: int, config: Config) -> World:
    nodes, specs = aks_nodes(node_count, pool_count)
    start = time.perf_counter()
    inventory = Inventory.build(nodes, config)
    build_seconds = time.perf_counter() - start
    retained, peak = inventory_memory(nodes, config)
    row: dict[str, Any] = {
        "nodes": node_count,
        "aks_pools": pool_count,
        "inventory_pools": len(inventory.pools),
        "nodes_per_pool": node_count / len(inventory.pools),
        "realistic": REALISTIC.get((node_count, pool_count), ""),
        "build_ms": build_seconds * 1e3,
        "inventory_kib": retained / 1024,
        "build_peak_kib": peak / 1024,
        "cases": {},
    }
    context: dict[str, Any] = {"config": config, "inventory": inventory, "namespace_labels": {}}
    return World(row, context, cases(nodes, specs))


def measure_group(
    node_counts: Sequence[int], pool_count: int, budget: Budget, config: Config
) -> list[dict[str, Any]]:
    """Every inventory with `pool_count` pools, each case timed on all of them in turn."""
    worlds = [build_world(n, pool_count, config) for n in node_counts]
    for k, name in enumerate(c.name for c in worlds[0].cases):
        decide_calls, validate_calls, unpatched_calls = [], [], []
        for world in worlds:
            case, context = world.cases[k], world.context
            decision = decide(case.request, **context)
            got = (decision.mutated.steered, decision.validated.outcome)
            if got != case.expected:
                where = f"{world.row['nodes']}/{pool_count}"
                raise SystemExit(f"{name} on {where}: expected {case.expected}, got {got}")
            # /validate as the apiserver calls it: on the object after the mutating webhook's patch.
            received = case.request
            if decision.mutated.patch and case.request.object is not None:
                received = replace(received, object=apply_patch(case.request.object, decision.mutated.patch))
            decide_calls.append(partial(decide, case.request, **context))
            validate_calls.append(partial(answer, received, endpoint=Endpoint.VALIDATE, **context))
            # /validate on the unpatched pod (mutating webhook bypassed or failed open): steers again, denies.
            unpatched_calls.append(partial(answer, case.request, endpoint=Endpoint.VALIDATE, **context))
            world.row["cases"][name] = {
                "what": case.what,
                "outcome": f"{decision.mutated.outcome.value}/{decision.validated.outcome.value}",
            }
        steered = worlds[0].cases[k].expected[0]
        for metric, calls in (("decide", decide_calls), ("validate", validate_calls)):
            for world, timing in zip(worlds, time_interleaved(calls, budget), strict=True):
                world.row["cases"][name] |= {
                    f"{metric}_us": timing.best_us,
                    f"{metric}_per_s": 1e6 / timing.best_us,
                    f"{metric}_cpu_us": timing.cpu_us,
                    f"{metric}_mean_us": timing.mean_us,
                    f"{metric}_iterations": timing.iterations,
                }
        if steered:
            for world, timing in zip(worlds, time_interleaved(unpatched_calls, budget), strict=True):
                world.row["cases"][name]["validate_unpatched_us"] = timing.best_us
    return [w.row for w in worlds]


METRICS = ("decide_us", "validate_us", "decide_cpu_us", "validate_cpu_us")


def scaling(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Same number of AKS pools (so the same inventory pools), fewest vs most nodes: µs and their ratio.

    The two were timed in turn (time_interleaved), so the ratio is fair even on a busy machine."""
    result = []
    for pools in sorted({r["aks_pools"] for r in rows}):
        same = sorted((r for r in rows if r["aks_pools"] == pools), key=lambda r: r["nodes"])
        if len(same) < 2:
            continue
        small, large = same[0], same[-1]
        for name in small["cases"]:
            entry: dict[str, Any] = {
                "aks_pools": pools,
                "case": name,
                "nodes": (small["nodes"], large["nodes"]),
            }
            for metric in METRICS:
                us = (small["cases"][name][metric], large["cases"][name][metric])
                entry[metric] = {"us": us, "ratio": us[1] / us[0]}
            result.append(entry)
    return result


def print_table(rows: list[dict[str, Any]], ratios: list[dict[str, Any]], pod_bytes: int) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"pod JSON size: {pod_bytes} bytes; Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    print("decide = mutate + apply patch + validate (the full path); validate = answer(endpoint=VALIDATE)")
    print(
        "alone, on the object /validate receives (the patched one when steered). inv.pools = pools x zones."
    )
    print("µs = mean per decision in the fastest of the rounds (min is robust to other processes' load).")
    for name, c in rows[0]["cases"].items():
        print(f"  {name:<8} {c['what']}")
    head = (
        f"{'nodes':>6} {'pools':>5} {'inv.pools':>9} {'n/pool':>7} {'build ms':>9} {'inv KiB':>8} "
        f"{'peak KiB':>9}  {'case':<8} {'outcome':<16} {'decide µs':>9} {'decide/s':>9} "
        f"{'valid. µs':>9} {'valid./s':>9}  note"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        for i, (name, c) in enumerate(r["cases"].items()):
            lead = (
                f"{r['nodes']:>6} {r['aks_pools']:>5} {r['inventory_pools']:>9} {r['nodes_per_pool']:>7.1f} "
                f"{r['build_ms']:>9.1f} {r['inventory_kib']:>8.0f} {r['build_peak_kib']:>9.0f}"
                if i == 0
                else " " * 61
            )
            note = r["realistic"] if i == 0 else ""
            if "validate_unpatched_us" in c:
                note = f"{note}; " if note else ""
                note += f"unpatched /validate {c['validate_unpatched_us']:.1f} µs"
            print(
                f"{lead}  {name:<8} {c['outcome']:<16} {c['decide_us']:>9.1f} {c['decide_per_s']:>9.0f} "
                f"{c['validate_us']:>9.1f} {c['validate_per_s']:>9.0f}  {note}"
            )
    print("\nper-decision cost vs nodes per pool: same pools, fewest vs most nodes, ratio (1.00 = flat)")
    print(f"{'pools':>5} {'nodes':>12}  {'case':<8} " + " ".join(f"{m:>24}" for m in METRICS))
    for x in ratios:
        cells = " ".join(
            f"{x[m]['us'][0]:>8.1f}→{x[m]['us'][1]:>8.1f} {x[m]['ratio']:>5.2f}" for m in METRICS
        )
        print(f"{x['aks_pools']:>5} {x['nodes'][0]:>5}→{x['nodes'][1]:<6}  {x['case']:<8} {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="few iterations: a smoke test, not a measurement"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    budget = Budget(0.1, 200, 10, 4) if args.quick else Budget(1.0, 2_000, 100, 20)
    config = Config()
    rows = []
    for pools in sorted({p for _, p in SIZES}):
        rows += measure_group([n for n, p in SIZES if p == pools and p <= n], pools, budget, config)
    rows.sort(key=lambda r: (r["nodes"], r["aks_pools"]))
    ratios = scaling(rows)
    pod_bytes = len(json.dumps(agent_pod(), separators=(",", ":")))
    if args.json:
        json.dump({"pod_bytes": pod_bytes, "quick": args.quick, "rows": rows, "scaling": ratios}, sys.stdout,
                  indent=2)  # fmt: skip
        print()
    else:
        print_table(rows, ratios, pod_bytes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
