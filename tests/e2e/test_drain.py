"""SIGTERM under load, through a real kube-apiserver: pods are created continuously while the only webhook
(failurePolicy Fail) gets SIGTERM. The apiserver's Go client does not retry a POST that met a connection
being closed, so a webhook that closes idle keep-alive connections at SIGTERM makes creates fail with
`failed calling webhook ... EOF` (issue 12). With the drain, every create that reaches the webhook is
answered; the ones that fail are those the apiserver could not connect for, after the webhook stopped
listening on its way out (with one replica there is nobody else to answer them).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from .harness import ControlPlane, wait_for
from .webhook_fixture import (
    SESSION_CONFIG,
    WebhookProcess,
    api_message,
    register,
    unregister,
    webhook_entry,
)

CREATES = 300
CREATORS = 4
SIGTERM_AFTER = 100
DRAIN_SECONDS = "3"
IMAGE = "registry.k8s.io/pause:3.10"

# How a failed webhook call reads in the apiserver's answer; the request never left the apiserver for the
# first, it was lost in a connection the webhook closed for the second.
REFUSED = re.compile(r"connect: connection refused")
MID_REQUEST = re.compile(r": EOF|unexpected EOF|connection reset by peer|broken pipe|server closed idle")


@dataclass(frozen=True)
class Create:
    """One pod create; times are time.time(), to compare with the webhook's log."""

    index: int
    started: float
    ended: float
    error: str = ""


def plain_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"e2e.immutable-os.io/drain": "yes"}},
        "spec": {"containers": [{"name": "main", "image": IMAGE}]},
    }


def configurations(process: WebhookProcess, namespace: str, name: str) -> list[dict[str, Any]]:
    """Both webhooks of `process`, failurePolicy Fail, for this test's namespace only."""
    only_here = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]
    }
    common: dict[str, Any] = {"failure_policy": "Fail", "namespace_selector": only_here}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": name},
         "webhooks": [webhook_entry("mutate.drain.immutable-os.io", f"{process.url}/mutate",
                                    process.ca_bundle, mutating=True, **common)]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": name},
         "webhooks": [webhook_entry("validate.drain.immutable-os.io", f"{process.url}/validate",
                                    process.ca_bundle, **common)]},
    ]  # fmt: skip


def test_pod_creates_through_sigterm_fail_only_as_refused_connections(
    control_plane: ControlPlane, api_client: k8s.ApiClient, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    token = secrets.token_hex(3)
    process = WebhookProcess(
        control_plane, f"drain-{token}", SESSION_CONFIG, extra_args=("--drain-seconds", DRAIN_SECONDS)
    )
    registered = configurations(process, namespace, f"immutable-os-e2e-drain-{token}")
    creates: list[Create] = []
    lock = threading.Lock()
    next_index = iter(range(CREATES))
    try:
        process.start()
        register(api_client, registered)

        def called() -> bool:
            probe = f"probe-{secrets.token_hex(2)}"
            core_v1.create_namespaced_pod(namespace, plain_pod(probe), dry_run="All")
            return any(entry.get("name") == probe for entry in process.reviews())

        wait_for(called, timeout=30, message="the apiserver to call the drain webhook")

        def creator() -> None:
            api = control_plane.api_client()
            core = k8s.CoreV1Api(api)
            try:
                while True:
                    with lock:
                        index = next(next_index, None)
                    if index is None:
                        return
                    started = time.time()
                    try:
                        core.create_namespaced_pod(namespace, plain_pod(f"drain-{index}"))
                        done = Create(index, started, time.time())
                    except k8s.ApiException as exc:
                        done = Create(index, started, time.time(), api_message(exc) or str(exc.reason))
                    with lock:
                        creates.append(done)
            finally:
                api.close()  # type: ignore[no-untyped-call]

        threads = [threading.Thread(target=creator, daemon=True) for _ in range(CREATORS)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(creates) >= SIGTERM_AFTER, timeout=60, interval=0.005,
                 message=lambda: f"{SIGTERM_AFTER} creates; done {len(creates)}")  # fmt: skip
        sigterm = time.time()
        process.terminate()
        exit_code = wait_for(lambda: (process.exit_code(),) if process.exit_code() is not None else None,
                             timeout=30, interval=0.005, message="the webhook to exit after SIGTERM")[0]  # fmt: skip
        exited = time.time()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "creators still running"
    finally:
        unregister(api_client, registered)
        process.stop()

    log = {
        entry["msg"]: entry["ts"] for entry in process.log_entries() if entry.get("logger") == "webhook.serve"
    }
    unlistened = log["stopped listening"]

    def phase(c: Create) -> str:
        if c.ended < sigterm:
            return "1 before SIGTERM"
        return (
            "2 draining" if c.ended < unlistened else "3 listener closed" if c.ended < exited else "4 exited"
        )

    failed = [c for c in creates if c.error]
    counts: dict[tuple[str, str], int] = {}
    for c in creates:
        kind = ("ok" if not c.error else "refused" if REFUSED.search(c.error)
                else "mid-request (EOF/reset)" if MID_REQUEST.search(c.error) else "other")  # fmt: skip
        counts[(phase(c), kind)] = counts.get((phase(c), kind), 0) + 1
    print(f"\n{len(creates)} pod creates from {CREATORS} threads, SIGTERM after {SIGTERM_AFTER}; the webhook "
          f"stopped listening {unlistened - sigterm:.2f} s after SIGTERM and exited {exit_code} "
          f"{exited - sigterm:.2f} s after it (drain deadline {DRAIN_SECONDS} s):")  # fmt: skip
    for (when, kind), n in sorted(counts.items()):
        print(f"  {when:15} {kind:25} {n}")
    for c in failed[:3]:
        print(f"  e.g. {c.error[:300]}")
    assert len(creates) == CREATES
    assert exit_code == 0
    assert all("failed calling webhook" in c.error for c in failed), [c.error for c in failed][:3]
    assert [c.error for c in failed if not REFUSED.search(c.error)] == []
    assert not any(c.ended < unlistened for c in failed)
    assert any(not c.error and c.started >= sigterm for c in creates), "nothing was served during the drain"
