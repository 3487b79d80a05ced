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
from typing import Any

from webhook.core.config import Config, HostPathRule
from webhook.core.contracts import Effect, HostContract, PathAccess, effect_of_path, normalise, worst
from webhook.core.policy.base import WORKS, Check, Consequence, Finding
from webhook.core.workloads import Container, PodSpecView
from webhook.errors import ManifestError, shown

CREATING_TYPES = frozenset({"DirectoryOrCreate", "FileOrCreate"})


def _mounts_by_volume(pod: PodSpecView) -> dict[Any, list[tuple[Container, Any]]]:
    """Every container's mounts, by volume name, read once: a pod may hold thousands of volumes and
    mounts, and looking each volume up across all mounts would cost volumes x mounts."""
    mounts: dict[Any, list[tuple[Container, Any]]] = {}
    for container in pod.containers():
        where = f"{container.field}.volumeMounts"
        for j, mount in enumerate(pod.objects("volumeMounts", container.raw, where)):
            read_only = mount.get("readOnly")
            if read_only is not None and not isinstance(read_only, bool):
                # "false" is truthy: read as read-only, a writable mount would be judged a read
                raise ManifestError(f"expected true or false, got {shown(read_only)}",
                                    field=f"{where}[{j}].readOnly", fix="write true or false")  # fmt: skip
            name = mount.get("name")
            mounts.setdefault(name if isinstance(name, str) else None, []).append((container, mount))
    return mounts


def _allowed(path: str, read_only: bool, rules: tuple[HostPathRule, ...]) -> bool:
    return any(rule.covers(path) and (read_only or not rule.read_only) for rule in rules)


def _host_paths(root: str, creates: bool, mounts: list[tuple[Container, Any]]) -> tuple[PathAccess, ...]:
    """Each distinct host path the pod touches through this volume, and whether it writes there."""
    root = normalise(root)
    writes: dict[str, bool] = {} if mounts else {root: False}
    for _, mount in mounts:
        sub = mount.get("subPath")
        # subPathExpr expands per pod: judge the volume root, which holds every expansion.
        path = normalise(f"{root}/{sub}") if isinstance(sub, str) and sub else root
        writes[path] = writes.get(path, False) or not mount.get("readOnly", False)
    if creates:
        writes.setdefault(root, False)
    return tuple(PathAccess(p, w, creates=creates and p == root) for p, w in sorted(writes.items()))


def evaluate(pod: PodSpecView, config: Config) -> list[Finding]:
    findings: list[Finding] = []
    mounts_of = _mounts_by_volume(pod)
    for i, volume in enumerate(pod.objects("volumes")):
        host_path = volume.get("hostPath")
        if host_path is None:
            continue
        where = pod.field(f"volumes[{i}]", "hostPath")
        if not isinstance(host_path, Mapping) or not isinstance(host_path.get("path"), str):
            raise ManifestError("hostPath needs a path", field=f"{where}.path", fix="give an absolute path")
        path: str = host_path["path"]
        name = str(volume.get("name", f"#{i}"))
        mounts = mounts_of.get(volume.get("name"), []) if isinstance(volume.get("name"), str) else []
        writable = sorted({c.name for c, m in mounts if not m.get("readOnly", False)})
        bidirectional = sorted({c.name for c, m in mounts if m.get("mountPropagation") == "Bidirectional"})
        if _allowed(path, not writable, config.allowed_host_paths):
            continue
        kind = host_path.get("type")
        kind = "" if kind is None else kind
        if not isinstance(kind, str):
            raise ManifestError(f"expected a string, got {shown(kind)}", field=f"{where}.type",
                                fix="e.g. Directory or DirectoryOrCreate")  # fmt: skip
        creates = kind in CREATING_TYPES
        notes = []
        if writable:
            notes.append(f"writable in {', '.join(writable)}")
        elif mounts:
            notes.append("read-only")
        else:
            notes.append("not mounted")
        if creates:
            notes.append(f"type {kind}")
        subs = sorted(
            {str(m["subPath"]) for _, m in mounts if isinstance(m.get("subPath"), str) and m["subPath"]}
        )
        if subs:
            notes.append(f"subPath {', '.join(subs)}")
        if bidirectional:
            notes.append(f"mountPropagation Bidirectional in {', '.join(bidirectional)}")
        findings.append(
            Finding(
                "host-path",
                f"{where}.path",
                "hostPath volume",
                f'volume "{name}" mounts {path} ({"; ".join(notes)})',
                paths=_host_paths(path, creates, mounts),
            )
        )
    return findings


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
