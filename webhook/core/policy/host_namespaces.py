"""Host namespace checks: host-pid, host-ipc, host-network.

Fields: spec.hostPID, spec.hostIPC, spec.hostNetwork. Allowed values: undefined, false.
On immutable OSes the host's processes, IPC objects and network stack are locked down (SELinux, code
integrity, no package manager), so tools that join them to install or reconfigure things fail there.
"""

from __future__ import annotations

from webhook.core.config import Config
from webhook.core.policy.base import Check, Finding
from webhook.core.workloads import PodSpecView


def _namespace_check(check_id: str, spec_field: str, what: str, why: str) -> Check:
    def evaluate(pod: PodSpecView, config: Config) -> list[Finding]:
        if not pod.flag(spec_field):
            return []
        return [Finding(check_id, pod.field(spec_field), f"host {what} namespace", f"{spec_field}: true")]

    return Check(check_id, why, evaluate)


HOST_PID = _namespace_check(
    "host-pid",
    "hostPID",
    "PID",
    "host processes run under code integrity and SELinux there; tooling that enters them breaks",
)
HOST_IPC = _namespace_check(
    "host-ipc", "hostIPC", "IPC", "host IPC objects are locked down there; sharing them breaks or is refused"
)
HOST_NETWORK = _namespace_check(
    "host-network",
    "hostNetwork",
    "network",
    "the host network stack is managed by the immutable image; changes to it are refused or lost",
)
