"""Host-access checks: an explicit registry, one module per check, its spec in the module docstring.

`evaluate` runs the enabled checks and returns findings sorted by check id and field, so messages are
deterministic. A test keeps the registry and `config.CHECK_IDS` in step.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.core.config import Config
from webhook.core.policy.base import Check, Finding
from webhook.core.policy.host_namespaces import HOST_IPC, HOST_NETWORK, HOST_PID
from webhook.core.policy.host_path import HOST_PATH
from webhook.core.policy.privileged import PRIVILEGED
from webhook.core.workloads import PodSpecView

REGISTRY: Mapping[str, Check] = {c.id: c for c in (HOST_PATH, HOST_PID, HOST_IPC, HOST_NETWORK, PRIVILEGED)}

__all__ = ["REGISTRY", "Check", "Finding", "evaluate", "why"]


def evaluate(pod: PodSpecView, config: Config) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    for check_id, check in REGISTRY.items():
        if config.check_settings(check_id).enabled:
            findings.extend(check.evaluate(pod, config))
    return tuple(sorted(findings))


def why(check_id: str) -> str:
    """Why this kind of host access breaks on immutable nodes, for denial messages."""
    return REGISTRY[check_id].why
