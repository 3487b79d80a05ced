"""Host-access checks: an explicit registry, one module per check, its spec in the module docstring.

`evaluate` runs the enabled checks and returns findings sorted by check id and field, so messages are
deterministic; `consequence` judges one finding against one OS's host contract, capped by the check's
configured severity (`warning` findings degrade at most). A test keeps the registry and
`config.CHECK_IDS` in step.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.core.config import Config, Severity
from webhook.core.contracts import Effect, HostContract
from webhook.core.policy.base import WORKS, Check, Consequence, Finding
from webhook.core.policy.host_namespaces import HOST_IPC, HOST_NETWORK, HOST_PID
from webhook.core.policy.host_path import HOST_PATH
from webhook.core.policy.privileged import PRIVILEGED
from webhook.core.workloads import PodSpecView

REGISTRY: Mapping[str, Check] = {c.id: c for c in (HOST_PATH, HOST_PID, HOST_IPC, HOST_NETWORK, PRIVILEGED)}

__all__ = ["REGISTRY", "WORKS", "Check", "Consequence", "Finding", "consequence", "evaluate", "fix"]


def evaluate(pod: PodSpecView, config: Config) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    for check_id, check in REGISTRY.items():
        if config.check_settings(check_id).enabled:
            findings.extend(check.evaluate(pod, config))
    return tuple(sorted(findings))


def consequence(finding: Finding, contract: HostContract, os_name: str, config: Config) -> Consequence:
    """What `finding` does on an OS with this contract; a `warning` check never breaks anything."""
    result = REGISTRY[finding.check].effect(finding, contract, os_name)
    if result.effect is Effect.BREAKS and config.check_settings(finding.check).severity is Severity.WARNING:
        return Consequence(Effect.DEGRADES, result.why + " (check severity: warning)")
    return result


def fix(check_id: str) -> str:
    """The general advice for findings of this check, for denial messages."""
    return REGISTRY[check_id].fix
