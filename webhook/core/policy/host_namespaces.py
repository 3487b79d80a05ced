"""Host namespace checks: host-pid, host-ipc, host-network.

Fields: spec.hostPID, spec.hostIPC, spec.hostNetwork. Allowed values: undefined, false.
Consequence: joining a host namespace works on these OSes (CNI and monitoring agents do it); what fails
is what a pod does there, so by default it degrades (the contract's `hostNamespaces`). One use is known
to break: entering the host with `nsenter` to run a package manager, which these OSes do not have, on a
read-only /usr. That is detected from the containers' command and args (host-pid).
"""

from __future__ import annotations

import re

from webhook.core.config import Config
from webhook.core.contracts import Effect, HostContract
from webhook.core.policy.base import WORKS, Check, Consequence, Finding
from webhook.core.workloads import PodSpecView

PACKAGE_MANAGERS = frozenset(
    {"apt", "apt-get", "aptitude", "dpkg", "yum", "dnf", "tdnf", "microdnf", "rpm", "zypper", "apk", "snap"}
)
_WORDS = re.compile(r"[^\s;&|()'\"`=]+")


def _words(pod: PodSpecView) -> list[list[str]]:
    """Per container, the words of its command and args (a shell script's too), as basenames."""
    result = []
    for container in pod.containers():
        words: list[str] = []
        for key in ("command", "args"):
            value = container.raw.get(key) or []
            if isinstance(value, list):
                for part in value:
                    if isinstance(part, str):
                        words += [w.rsplit("/", 1)[-1] for w in _WORDS.findall(part)]
        result.append(words)
    return result


def _enters_host_to_install(pod: PodSpecView) -> bool:
    return any("nsenter" in words and PACKAGE_MANAGERS.intersection(words) for words in _words(pod))


def _namespace_check(check_id: str, spec_field: str, what: str, *, detects_installs: bool = False) -> Check:
    def evaluate(pod: PodSpecView, config: Config) -> list[Finding]:
        if not pod.flag(spec_field):
            return []
        installs = detects_installs and _enters_host_to_install(pod)
        detail = f"{spec_field}: true" + (
            "; runs a package manager in the host via nsenter" if installs else ""
        )
        return [Finding(check_id, pod.field(spec_field), f"host {what} namespace", detail,
                        runs_package_manager=installs)]  # fmt: skip

    def effect(finding: Finding, contract: HostContract, os_name: str) -> Consequence:
        if finding.runs_package_manager:
            return Consequence(Effect.BREAKS, f"{os_name} has no package manager and its /usr is read-only")
        if contract.host_namespaces is Effect.WORKS:
            return WORKS
        return Consequence(
            contract.host_namespaces,
            f"the host {what} namespace of {os_name} is locked down: tooling that changes the host "
            "from there fails",
        )

    fix = f"drop {spec_field} unless it is needed; ship tools in the image, don't install them on the host"
    return Check(check_id, evaluate, effect, fix, f"has(s.{spec_field}) && s.{spec_field}")


HOST_PID = _namespace_check("host-pid", "hostPID", "PID", detects_installs=True)
HOST_IPC = _namespace_check("host-ipc", "hostIPC", "IPC")
HOST_NETWORK = _namespace_check("host-network", "hostNetwork", "network")
