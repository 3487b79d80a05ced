"""Large legitimate objects through the real apiserver: nothing the apiserver stores is refused for size.

The apiserver writes a review with Go's encoding/json, which escapes `&`, `<` and `>` as 6-byte `\\u0026`
escapes, and an UPDATE carries the object and the old object: a ~1.4 MB object full of them arrives as
~8.4 MB, its UPDATE as ~17 MB. The edge's body cap (webhook/adapters/http/edge.py) is sized for that.
Each object here asks for host access, so the chart's matchCondition sends it to the session webhook, and
each test finds the webhook's own log line for the review: the workloads webhook fails open (Ignore), so
an admitted object alone would not prove it was judged.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s

from .harness import wait_for
from .webhook_fixture import SessionWebhook

IMAGE = "registry.k8s.io/pause:3.10"
STEERED = "immutable-os.io/steered"
#: The stored object's size is ~ this plus ~1 KB; each byte is escaped to 6 in the review.
FILLER_BYTES = 1_400_000


def filler(seed: str) -> str:
    """FILLER_BYTES of `&`, `<` and `>` (each escaped to 6 bytes by Go), starting with `seed`."""
    return (seed + "&<>" * (FILLER_BYTES // 3))[:FILLER_BYTES]


def big_pod_spec(
    value: str, *, host_path: str, node_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    container = {"name": "main", "image": IMAGE, "env": [{"name": "BIG", "value": value}],
                 "volumeMounts": [{"name": "host", "mountPath": "/host"}]}  # fmt: skip
    spec: dict[str, Any] = {"containers": [container],
                            "volumes": [{"name": "host", "hostPath": {"path": host_path}}]}  # fmt: skip
    if node_selector:
        spec["nodeSelector"] = node_selector
    return spec


def logged(webhook: SessionWebhook, namespace: str, name: str, operation: str) -> list[dict[str, Any]]:
    """The webhook's review log lines for `operation` on `name` (at least one, within 15 s)."""

    def found() -> list[dict[str, Any]]:
        return [e for e in webhook.process.reviews() if e.get("namespace") == namespace
                and e.get("name") == name and e.get("operation") == operation]  # fmt: skip

    entries: list[dict[str, Any]] = wait_for(
        found, timeout=15, message=f"the webhook's review of {operation} {name}"
    )
    return entries


def test_an_update_of_a_1_4_mb_deployment_is_judged_and_passes(
    webhook: SessionWebhook, api_client: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(api_client)
    labels = {"app": "big"}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big"},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": big_pod_spec(filler("a"), host_path="/var/log")}},
    }  # fmt: skip
    apps.create_namespaced_deployment(namespace, deployment)
    # The template changes (another value of the same size): the UPDATE is judged again.
    deployment["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = filler("b")
    apps.replace_namespaced_deployment("big", namespace, deployment)

    # Read back as JSON the apiserver escapes the same way: ~6 x the stored size.
    raw = apps.read_namespaced_deployment("big", namespace, _preload_content=False).data
    assert len(raw) > 5 * FILLER_BYTES
    assert json.loads(raw)["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == filler("b")
    for entry in logged(webhook, namespace, "big", "UPDATE"):
        assert entry["kind"] == "Deployment" and entry["allowed"] is True, entry
    print(f"\nDeployment of ~{FILLER_BYTES / 1e6:.1f} MB ({len(raw) / 1e6:.1f} MB as JSON from the apiserver, "
          f"~{2 * len(raw) / 1e6:.0f} MB as an UPDATE review): "
          f"{[(e['endpoint'], e['decision'], e['ms']) for e in logged(webhook, namespace, 'big', 'UPDATE')]}")  # fmt: skip


def test_a_1_4_mb_pod_is_steered_and_its_placement_update_is_judged(
    webhook: SessionWebhook, core_v1: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """A create (~8.4 MB review) steered with a patch; then an UPDATE adding a toleration to a second big pod
    (object and old object: ~17 MB, the worst case the cap is sized for)."""
    steered = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
               "spec": big_pod_spec(filler("a"), host_path="/usr/local/bin")}  # fmt: skip
    created = core_v1.create_namespaced_pod(namespace, steered)
    assert STEERED in (created.metadata.annotations or {})
    assert created.spec.containers[0].env[0].value == filler("a")  # the patch kept the object whole

    general = {"agentpool": webhook.pools.general}
    pinned = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big-general"},
              "spec": {**big_pod_spec(filler("c"), host_path="/usr/local/bin", node_selector=general),
                       "schedulingGates": [{"name": "e2e/hold"}]}}  # fmt: skip
    core_v1.create_namespaced_pod(namespace, pinned)
    toleration = {"key": "e2e/big", "operator": "Exists", "effect": "NoSchedule"}
    core_v1.patch_namespaced_pod(
        "big-general", namespace, [{"op": "add", "path": "/spec/tolerations/-", "value": toleration}]
    )
    updates = logged(webhook, namespace, "big-general", "UPDATE")
    assert [e["decision"] for e in updates] == ["works"], updates
    raw = core_v1.read_namespaced_pod("big-general", namespace, _preload_content=False).data
    assert toleration in json.loads(raw)["spec"]["tolerations"]
    print(f"\npod create {[(e['endpoint'], e['decision'], e['ms']) for e in logged(webhook, namespace, 'big', 'CREATE')]}"
          f"; pod UPDATE {[(e['endpoint'], e['decision'], e['ms']) for e in updates]}")  # fmt: skip
