"""Migration readiness: the decision for every workload in a cluster, optionally as if some pools already
ran an immutable OS; rendered as a table, JSON, or wgpolicyk8s.io PolicyReports. Pure: `scan` lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.core.admission import Decision, Outcome, Request, decide
from webhook.core.config import PROFILE_LABEL, Config
from webhook.core.placement import Inventory, Node
from webhook.core.placement.inventory import POOL_NAME_LABELS
from webhook.core.workloads import POD_TEMPLATE_PATHS

POLICY_NAME = "immutable-os-webhook"
# Objects whose pods are judged through their owner's template (a Deployment's ReplicaSets, a CronJob's
# Jobs, every controller's Pods) are reported once, at the owner.
JUDGED_OWNERS = frozenset(POD_TEMPLATE_PATHS) - {"Pod", "PodTemplate"}


@dataclass(frozen=True)
class Row:
    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str
    decision: Decision

    @property
    def verdict(self) -> str:
        """What would happen to this workload if it were applied now."""
        if not self.decision.allowed:
            return "denied"
        if self.decision.mutated.steered:
            return "steered"
        return {Outcome.WARNED: "warned", Outcome.AUDITED: "audited"}.get(
            self.decision.validated.outcome, "allowed"
        )

    def to_json(self) -> dict[str, Any]:
        placement = self.decision.placement
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "verdict": self.verdict,
            "outcome": self.decision.validated.outcome.value,
            "findings": [
                {"check": f.check, "field": f.field, "message": f.detail} for f in self.decision.findings
            ],
            "landsOn": [f"{p.node_class.value}:{p.name}" for p in placement.pools] if placement else [],
            "message": self.decision.validated.message,
            "warnings": list(self.decision.warnings),
        }


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
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        request = Request(
            uid=str(meta.get("uid") or ""),
            operation="CREATE",
            kind=kind,
            sub_resource="",
            namespace=namespace,
            name=str(meta.get("name") or ""),
            username="",
            groups=frozenset(),
            dry_run=True,
            object=obj,
        )
        decision = decide(
            request, config=config, inventory=inventory, namespace_labels=namespace_labels.get(namespace, {})
        )
        rows.append(
            Row(kind, namespace, request.name, request.uid, str(obj.get("apiVersion") or ""), decision)
        )
    return sorted(rows, key=lambda r: (r.namespace, r.kind, r.name))


def table(rows: Sequence[Row]) -> str:
    header = ("NAMESPACE", "KIND", "NAME", "VERDICT", "FINDINGS", "LANDS ON")
    lines = [header]
    for row in rows:
        placement = row.decision.placement
        lands = ",".join(p.name for p in placement.pools) if placement else "-"
        checks = ",".join(dict.fromkeys(f.check for f in row.decision.findings)) or "-"
        lines.append(
            (row.namespace or "-", row.kind, row.name, row.verdict, checks, lands if checks != "-" else "-")
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


_RESULT = {"denied": "fail", "steered": "warn", "warned": "warn", "audited": "warn", "allowed": "pass"}


def policy_reports(rows: Sequence[Row], *, timestamp_seconds: int) -> list[dict[str, Any]]:
    """One wgpolicyk8s.io/v1alpha2 PolicyReport per namespace: a result per finding, `pass` for the rest."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        resource = {
            "apiVersion": row.api_version,
            "kind": row.kind,
            "name": row.name,
            "namespace": row.namespace,
        }
        if row.uid:
            resource["uid"] = row.uid
        result = _RESULT[row.verdict] if row.decision.findings else "pass"
        message = (
            row.decision.validated.message or "; ".join(row.decision.warnings) or "no host access at risk"
        )
        findings = row.decision.findings or ()
        rules = [(f.check, f"{f.field}: {f.detail}") for f in findings] or [("host-access", message)]
        for rule, detail in rules:
            by_namespace.setdefault(row.namespace, []).append(
                {
                    "policy": POLICY_NAME, "rule": rule, "result": result, "source": POLICY_NAME,
                    "category": "Immutable OS", "severity": "high" if result == "fail" else "medium",
                    "message": detail if result == "pass" else f"{row.verdict}: {detail}",
                    "properties": {"verdict": row.verdict},
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
