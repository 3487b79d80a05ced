"""host-path: any hostPath volume, unless `allowedHostPaths` allows it.

Field: spec.volumes[*].hostPath. Allowed values: undefined, or a path matched by an allowedHostPaths
prefix by whole segments (`/var/log` matches `/var/log/pods`, not `/var/logs`) and, when that rule says
readOnly, mounted read-only by every container (containers, initContainers, ephemeralContainers).
On immutable OSes `/usr` is read-only (dm-verity) and no state survives outside provisioning, so host
paths are missing, unwritable, or wiped on the next image update.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.config import Config, HostPathRule
from webhook.core.policy.base import Check, Finding
from webhook.core.workloads import Container, PodSpecView
from webhook.errors import ManifestError


def _mounts_of(volume: str, containers: list[Container], pod: PodSpecView) -> list[tuple[Container, Any]]:
    mounts = []
    for container in containers:
        for mount in pod.objects("volumeMounts", container.raw, f"{container.field}.volumeMounts"):
            if mount.get("name") == volume:
                mounts.append((container, mount))
    return mounts


def _allowed(path: str, read_only: bool, rules: tuple[HostPathRule, ...]) -> bool:
    return any(rule.covers(path) and (read_only or not rule.read_only) for rule in rules)


def evaluate(pod: PodSpecView, config: Config) -> list[Finding]:
    findings: list[Finding] = []
    containers = list(pod.containers())
    for i, volume in enumerate(pod.objects("volumes")):
        host_path = volume.get("hostPath")
        if host_path is None:
            continue
        where = pod.field(f"volumes[{i}]", "hostPath")
        if not isinstance(host_path, Mapping) or not isinstance(host_path.get("path"), str):
            raise ManifestError("hostPath needs a path", field=f"{where}.path", fix="give an absolute path")
        path: str = host_path["path"]
        name = str(volume.get("name", f"#{i}"))
        mounts = _mounts_of(name, containers, pod)
        writable = sorted({c.name for c, m in mounts if not m.get("readOnly", False)})
        bidirectional = sorted({c.name for c, m in mounts if m.get("mountPropagation") == "Bidirectional"})
        if _allowed(path, not writable, config.allowed_host_paths):
            continue
        notes = []
        if writable:
            notes.append(f"writable in {', '.join(writable)}")
        elif mounts:
            notes.append("read-only")
        else:
            notes.append("not mounted")
        if bidirectional:
            notes.append(f"mountPropagation Bidirectional in {', '.join(bidirectional)}")
        findings.append(
            Finding(
                "host-path",
                f"{where}.path",
                "hostPath volume",
                f'volume "{name}" mounts {path} ({"; ".join(notes)})',
            )
        )
    return findings


HOST_PATH = Check(
    "host-path",
    "/usr is read-only and host state is wiped by image updates there; host paths are missing or unwritable",
    evaluate,
)
