"""host-path: hostPath volumes, judged per OS by what the pod does with each host path.

Field: spec.volumes[*].hostPath. Allowed values: undefined, or a path matched by an allowedHostPaths
prefix by whole segments (`/var/log` matches `/var/log/pods`, not `/var/logs`) and, when that rule says
readOnly, mounted read-only by every container (containers, initContainers, ephemeralContainers).
Consequence: reading works everywhere. Writing (a mount without readOnly, or type DirectoryOrCreate /
FileOrCreate, which makes the kubelet create the path) into a read-only tree breaks, as does a writable
mount holding one (`/` holds `/usr`); writes to a volatile tree, and binaries dropped where code
integrity flags them, degrade; the rest works. Paths are read with subPath and merged-/usr aliases.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from webhook.core.config import Config, HostPathRule
from webhook.core.contracts import Effect, HostContract, PathAccess, effect_of_path, normalise, worst
from webhook.core.policy.base import WORKS, Check, Consequence, Finding
from webhook.core.workloads import Container, PodSpecView
from webhook.errors import ManifestError, shown

CREATING_TYPES = frozenset({"DirectoryOrCreate", "FileOrCreate"})


def _mounts_field(container: Container) -> str:
    return f"{container.field}.volumeMounts"


def _mounts_by_volume(
    containers: list[Container], pod: PodSpecView
) -> dict[str, list[tuple[Container, Any]]]:
    """Every container's volumeMounts, by the volume they name (read once, when a hostPath needs them)."""
    mounts: dict[str, list[tuple[Container, Any]]] = {}
    for container in containers:
        where = partial(_mounts_field, container)
        for j, mount in enumerate(pod.objects("volumeMounts", container.raw, where)):
            read_only = mount.get("readOnly")
            if read_only is not None and not isinstance(read_only, bool):
                # "false" is truthy: read as read-only, a writable mount would be judged a read
                raise ManifestError(f"expected true or false, got {shown(read_only)}",
                                    field=f"{where()}[{j}].readOnly", fix="write true or false")  # fmt: skip
            name = mount.get("name")
            if isinstance(name, str):  # a volume's name is a string: nothing else can name one
                mounts.setdefault(name, []).append((container, mount))
    return mounts


def _allowed(path: str, read_only: bool, rules: tuple[HostPathRule, ...]) -> bool:
    return any(rule.covers(path) and (read_only or not rule.read_only) for rule in rules)


# How one container mounts a volume, as far as the finding goes: container name, writes (no readOnly),
# mountPropagation Bidirectional, subPath ("" for none).
Use = tuple[str, bool, bool, str]


def _use(container: Container, mount: Any) -> Use:
    sub = mount.get("subPath")
    return (
        container.name,
        not mount.get("readOnly", False),
        mount.get("mountPropagation") == "Bidirectional",
        sub if isinstance(sub, str) else "",
    )


def _host_paths(root: str, creates: bool, uses: tuple[Use, ...]) -> tuple[PathAccess, ...]:
    """Each distinct host path the pod touches through this volume, and whether it writes there."""
    root = normalise(root)
    writes: dict[str, bool] = {} if uses else {root: False}
    for _, writable, _, sub in uses:
        # subPathExpr expands per pod: judge the volume root, which holds every expansion.
        path = normalise(f"{root}/{sub}") if sub else root
        writes[path] = writes.get(path, False) or writable
    if creates:
        writes.setdefault(root, False)
    return tuple(PathAccess(p, w, creates=creates and p == root) for p, w in sorted(writes.items()))


def evaluate(pod: PodSpecView, config: Config) -> list[Finding]:
    findings: list[Finding] = []
    containers = list(pod.containers())
    by_volume: dict[str, list[tuple[Container, Any]]] | None = None
    for i, volume in enumerate(pod.objects("volumes")):
        host_path = volume.get("hostPath")
        if host_path is None:
            continue
        if not isinstance(host_path, Mapping) or not isinstance(host_path.get("path"), str):
            where = pod.field(f"volumes[{i}]", "hostPath")
            raise ManifestError("hostPath needs a path", field=f"{where}.path", fix="give an absolute path")
        name = str(volume.get("name", f"#{i}"))
        if by_volume is None:
            by_volume = _mounts_by_volume(containers, pod)
        uses = tuple(_use(c, m) for c, m in by_volume.get(name, ()))
        kind = host_path.get("type")
        kind = "" if kind is None else kind
        if not isinstance(kind, str):
            raise ManifestError(f"expected a string, got {shown(kind)}",
                                field=f"{pod.field(f'volumes[{i}]', 'hostPath')}.type",
                                fix="e.g. Directory or DirectoryOrCreate")  # fmt: skip
        judge = partial(_judge_volume, pod, i, name, host_path["path"], kind, uses, config)
        # The pods of one workload mount the same volumes the same way: judged once per config.
        key = ("host-path", pod.template_path, i, name, host_path["path"], kind, uses)
        size = len(name) + len(host_path["path"]) + sum(len(u[0]) + len(u[3]) for u in uses)
        finding = config.memoized(key, judge, size)
        if finding is not None:
            findings.append(finding)
    return findings


def _judge_volume(
    pod: PodSpecView, i: int, name: str, path: str, kind: str, uses: tuple[Use, ...], config: Config
) -> Finding | None:
    writable = sorted({c for c, writes, _, _ in uses if writes})
    bidirectional = sorted({c for c, _, both_ways, _ in uses if both_ways})
    if _allowed(path, not writable, config.allowed_host_paths):
        return None
    creates = kind in CREATING_TYPES
    notes = []
    if writable:
        notes.append(f"writable in {', '.join(writable)}")
    elif uses:
        notes.append("read-only")
    else:
        notes.append("not mounted")
    if creates:
        notes.append(f"type {kind}")
    subs = sorted({sub for _, _, _, sub in uses if sub})
    if subs:
        notes.append(f"subPath {', '.join(subs)}")
    if bidirectional:
        notes.append(f"mountPropagation Bidirectional in {', '.join(bidirectional)}")
    return Finding(
        "host-path",
        f"{pod.field(f'volumes[{i}]', 'hostPath')}.path",
        "hostPath volume",
        f'volume "{name}" mounts {path} ({"; ".join(notes)})',
        paths=_host_paths(path, creates, uses),
    )


def effect(finding: Finding, contract: HostContract, os_name: str) -> Consequence:
    judged = [effect_of_path(access, contract, os_name) for access in finding.paths]
    worst_effect = worst(e for e, _ in judged)
    if worst_effect is Effect.WORKS:
        return WORKS
    return Consequence(worst_effect, "; ".join(why for e, why in judged if e is worst_effect))


HOST_PATH = Check(
    "host-path",
    evaluate,
    effect,
    "mount it read-only, or write only where the OS allows it and runs what is written (docs/profiles.md)",
    "has(s.volumes) && s.volumes.exists(v, has(v.hostPath))",
)
