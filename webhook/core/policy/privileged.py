"""privileged: containers that run privileged (off by default: privilege alone is not host-bound).

Field: spec.{initContainers,containers,ephemeralContainers}[*].securityContext.privileged.
Allowed values: undefined, false. Consequence: the contract's `privileged` (degrades by default): code
integrity and SELinux still confine privileged containers, so tools that load modules or change the
host from one may fail there.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.core.config import Config
from webhook.core.contracts import Effect, HostContract
from webhook.core.policy.base import WORKS, Check, Consequence, Finding
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


def effect(finding: Finding, contract: HostContract, os_name: str) -> Consequence:
    if contract.privileged is Effect.WORKS:
        return WORKS
    return Consequence(contract.privileged, f"code integrity and SELinux still confine it on {os_name}")


PRIVILEGED = Check(
    "privileged",
    evaluate,
    effect,
    "drop privileged, or grant only the capabilities it needs",
    " || ".join(
        f"has(s.{f}) && s.{f}.exists(c, has(c.securityContext) && has(c.securityContext.privileged)"
        " && c.securityContext.privileged)"
        for f in ("containers", "initContainers", "ephemeralContainers")
    ),
)
