"""Migration readiness: the decision for every workload in a cluster, optionally as if some pools already
ran an immutable OS; rendered as a table, JSON, or wgpolicyk8s.io PolicyReports. Pure: `scan` lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.core.admission import Decision, Outcome, Request, decide
from webhook.core.assessment import Assessment, Status
from webhook.core.config import Config
from webhook.core.contracts import Effect
from webhook.core.placement import Inventory, Node
from webhook.core.placement.inventory import POOL_NAME_LABELS
from webhook.core.profiles import PROFILE_LABEL
from webhook.core.workloads import POD_TEMPLATE_PATHS

POLICY_NAME = "immutable-os-webhook"
# Objects whose pods are judged through their owner's template (a Deployment's ReplicaSets, a CronJob's
# Jobs, every controller's Pods) are reported once, at the owner.
JUDGED_OWNERS = frozenset(POD_TEMPLATE_PATHS) - {"Pod", "PodTemplate"}
VERDICTS = ("allowed", "degraded", "steered", "warned", "audited", "denied")


@dataclass(frozen=True)
class Row:
    """What the webhook would do to one workload: the one result shape of `check` and `scan`."""

    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str
    decision: Decision
    source: str = ""  # file and document, for `check`

    @property
    def assessment(self) -> Assessment:
        return self.decision.assessment

    @property
    def verdict(self) -> str:
        """What would happen to this workload if it were applied now."""
        if not self.decision.allowed:
            return "denied"
        if self.decision.mutated.steered:
            return "steered"
        return {Outcome.WARNED: "warned", Outcome.AUDITED: "audited", Outcome.DEGRADED: "degraded"}.get(
            self.decision.validated.outcome, "allowed"
        )

    @property
    def outcome(self) -> str:
        return (
            self.decision.mutated if self.decision.mutated.steered else self.decision.validated
        ).outcome.value

    def pools(self, effect: Effect) -> list[str]:
        return [p.name for p in self.assessment.with_effect(effect)]

    def coverage(self) -> dict[str, Any] | None:
        """For a DaemonSet: nodes it covers as submitted, and after steering (None without node counts)."""
        a = self.assessment
        if not a.daemon_set or a.status is not Status.JUDGED or any(p.nodes is None for p in a.pools):
            return None
        total = sum(p.nodes or 0 for p in a.pools)
        lost = [p for p in a.breaks] if self.verdict in ("steered", "denied") else []
        kept = 0 if self.verdict == "denied" else total - sum(p.nodes or 0 for p in lost)
        return {
            "daemonSet": a.daemon_set,
            "nodes": total,
            "nodesAfter": kept,
            "losesPools": [p.name for p in lost],
        }

    def to_json(self) -> dict[str, Any]:
        a = self.assessment
        result: dict[str, Any] = {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "verdict": self.verdict,
            "outcome": self.outcome,
            "findings": [{"check": f.check, "field": f.field, "message": f.detail} for f in a.findings],
            "landsOn": [f"{p.pool.node_class.value}:{p.name}" for p in a.pools],
            "breaksOn": self.pools(Effect.BREAKS),
            "degradedOn": self.pools(Effect.DEGRADES),
            "warnings": list(self.decision.warnings),
            "patch": list(self.decision.mutated.patch),
        }
        if self.source:
            result = {"source": self.source, **result}
        if not self.decision.allowed:
            result["message"] = self.decision.validated.message
        coverage = self.coverage()
        if coverage is not None:
            result["coverage"] = coverage
        return result


def row(obj: Mapping[str, Any], decision: Decision, source: str = "") -> Row:
    meta = obj.get("metadata") or {}
    request = decision.assessment.request
    return Row(request.kind, request.namespace, request.name, str(meta.get("uid") or ""),
               str(obj.get("apiVersion") or ""), decision, source)  # fmt: skip


def request_for(obj: Mapping[str, Any], *, namespace: str = "", uid: str = "", username: str = "",
                groups: frozenset[str] = frozenset()) -> Request:  # fmt: skip
    """The CREATE request the apiserver would send for `obj`, to judge it as if applied now."""
    meta = obj.get("metadata") or {}
    return Request(
        uid=uid or str(meta.get("uid") or ""),
        operation="CREATE",
        kind=str(obj.get("kind") or ""),
        sub_resource="",
        namespace=str(meta.get("namespace") or namespace),
        name=str(meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "")),
        username=username,
        groups=groups,
        dry_run=True,
        object=obj,
    )


def assume_immutable(nodes: Iterable[Node], pools: Mapping[str, str]) -> list[Node]:
    """The nodes as if the named pools (by pool label) already ran an immutable OS: `{pool: profile}`."""
    result = []
    for node in nodes:
        pool = next((node.labels[k] for k in POOL_NAME_LABELS if k in node.labels), "")
        if pool in pools:
            node = replace(node, labels={**node.labels, PROFILE_LABEL: pools[pool]})
        result.append(node)
    return result


def _owned_by_judged_kind(obj: Mapping[str, Any]) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(
        o.get("kind") in JUDGED_OWNERS and o.get("controller") for o in owners if isinstance(o, Mapping)
    )


def scan(
    objects: Iterable[Mapping[str, Any]],
    *,
    config: Config,
    inventory: Inventory,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> list[Row]:
    rows = []
    for obj in objects:
        kind = str(obj.get("kind") or "")
        if kind not in POD_TEMPLATE_PATHS or _owned_by_judged_kind(obj):
            continue
        request = request_for(obj)
        labels = namespace_labels.get(request.namespace, {})
        rows.append(row(obj, decide(request, config=config, inventory=inventory, namespace_labels=labels)))
    return sorted(rows, key=lambda r: (r.namespace, r.kind, r.name))


def table(rows: Sequence[Row]) -> str:
    header = ("NAMESPACE", "KIND", "NAME", "VERDICT", "FINDINGS", "BREAKS ON", "DEGRADES ON")
    lines = [header]
    for r in rows:
        checks = ",".join(dict.fromkeys(f.check for f in r.assessment.findings)) or "-"
        breaks = ",".join(r.pools(Effect.BREAKS)) or "-"
        degrades = ",".join(r.pools(Effect.DEGRADES)) or "-"
        lines.append((r.namespace or "-", r.kind, r.name, r.verdict, checks, breaks, degrades))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


_RESULT = {"denied": "fail", "steered": "warn", "warned": "warn", "audited": "warn", "degraded": "warn",
           "allowed": "pass"}  # fmt: skip


def policy_reports(rows: Sequence[Row], *, timestamp_seconds: int) -> list[dict[str, Any]]:
    """One wgpolicyk8s.io/v1alpha2 PolicyReport per namespace: a result per finding, `pass` for the rest."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        resource = {"apiVersion": r.api_version, "kind": r.kind, "name": r.name, "namespace": r.namespace}
        if r.uid:
            resource["uid"] = r.uid
        findings = r.assessment.findings
        result = _RESULT[r.verdict] if findings else "pass"
        message = r.decision.validated.message or "; ".join(r.decision.warnings) or "no host access at risk"
        rules = [(f.check, f"{f.field}: {f.detail}") for f in findings] or [("host-access", message)]
        for rule, detail in rules:
            by_namespace.setdefault(r.namespace, []).append(
                {
                    "policy": POLICY_NAME, "rule": rule, "result": result, "source": POLICY_NAME,
                    "category": "Immutable OS", "severity": "high" if result == "fail" else "medium",
                    "message": detail if result == "pass" else f"{r.verdict}: {detail}",
                    "properties": {"verdict": r.verdict},
                    "resources": [resource], "timestamp": {"seconds": timestamp_seconds, "nanos": 0},
                }
            )  # fmt: skip
    reports = []
    for namespace, results in sorted(by_namespace.items()):
        summary = {
            k: sum(1 for r in results if r["result"] == k) for k in ("pass", "fail", "warn", "error", "skip")
        }
        metadata = {"name": POLICY_NAME, "labels": {"app.kubernetes.io/managed-by": POLICY_NAME}}
        kind = "PolicyReport" if namespace else "ClusterPolicyReport"
        if namespace:
            metadata["namespace"] = namespace
        reports.append({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": kind, "metadata": metadata,
                        "summary": summary, "results": results})  # fmt: skip
    return reports
