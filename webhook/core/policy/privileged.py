"""privileged: containers that run privileged (off by default: privilege alone is not host-bound).

Field: spec.{initContainers,containers,ephemeralContainers}[*].securityContext.privileged.
Allowed values: undefined, false. On immutable OSes IPE and SELinux still confine privileged
containers, so tools that load modules or write to the host from one fail there.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.core.config import Config
from webhook.core.policy.base import Check, Finding
from webhook.core.workloads import PodSpecView


def evaluate(pod: PodSpecView, config: Config) -> list[Finding]:
    findings = []
    for container in pod.containers():
        context = container.raw.get("securityContext") or {}
        if isinstance(context, Mapping) and context.get("privileged") is True:
            findings.append(
                Finding(
                    "privileged",
                    f"{container.field}.securityContext.privileged",
                    "privileged container",
                    f'container "{container.name}" is privileged',
                )
            )
    return findings


PRIVILEGED = Check(
    "privileged", "code integrity (IPE) and SELinux still confine privileged containers there", evaluate
)
