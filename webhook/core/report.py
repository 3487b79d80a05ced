"""The one result shape of `check` and `scan` (`Row`), what a run judged and skipped (`Summary`), which
verdicts fail a run (`--fail-on`), and the renderings: a table, JSON, and PolicyReports in the
wgpolicyk8s.io/v1alpha2 form or the openreports.io/v1alpha1 form. Pure: `check` reads files, `scan` lists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.core.admission import Decision, Outcome, Request, decide
from webhook.core.assessment import Assessment, Status
from webhook.core.config import DEFAULT_SELECTORS, Config
from webhook.core.contracts import Effect
from webhook.core.manifests import Role, classify, describe
from webhook.core.placement import Inventory, Node
from webhook.core.placement.inventory import POOL_NAME_LABELS
from webhook.core.profiles import PROFILE_LABEL
from webhook.core.scope import EVERYTHING, Scope
from webhook.core.workloads import POD_TEMPLATE_PATHS
from webhook.errors import WebhookError

POLICY_NAME = "immutable-os-webhook"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# Objects whose pods are judged through their owner's template (a Deployment's ReplicaSets, a CronJob's
# Jobs, every controller's Pods) are reported once, at the owner.
JUDGED_OWNERS = frozenset(POD_TEMPLATE_PATHS) - {"Pod", "PodTemplate"}
# From least to most serious. `--fail-on V` fails a run on any verdict at V or above (docs/migration.md):
# allowed   nothing at risk, or exempt;
# degraded  works everywhere it can land, but degrades on some pools (kubectl prints a warning);
# audited   audit mode: admitted unchanged and recorded; enforce would steer or deny it;
# warned    warn mode (or steering.daemonSets: warn): admitted unchanged with a warning; enforce would
#           steer or deny it, or it fails on some pools;
# steered   enforce changes it: node affinity keeps it off the pools it breaks on (with a warning);
# denied    enforce refuses it.
VERDICTS = ("allowed", "degraded", "audited", "warned", "steered", "denied")
FAIL_ON = ("denied", "steered", "warned", "audited", "degraded", "never")


def fails(verdict: str, fail_on: str) -> bool:
    """Whether `verdict` fails a run under `--fail-on fail_on` (`never`: nothing does)."""
    return fail_on in VERDICTS and VERDICTS.index(verdict) >= VERDICTS.index(fail_on)


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

    @property
    def exempt(self) -> bool:
        return self.decision.validated.outcome is Outcome.EXEMPT

    @property
    def display_name(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

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
    """The nodes as if the named pools (by pool label) already ran an immutable OS: `{pool: profile}`.

    They get the marker label; `what_if_config` makes sure the config reads it."""
    result = []
    for node in nodes:
        pool = next((node.labels[k] for k in POOL_NAME_LABELS if k in node.labels), "")
        if pool in pools:
            node = replace(node, labels={**node.labels, PROFILE_LABEL: pools[pool]})
        result.append(node)
    return result


def what_if_config(config: Config) -> Config:
    """`config`, reading the marker label even where its immutableNodeSelectors dropped the default
    selector: `assume_immutable` marks the assumed pools with it."""
    if any(s.requirements == DEFAULT_SELECTORS[0].requirements for s in config.immutable_node_selectors):
        return config
    return replace(config, immutable_node_selectors=(*config.immutable_node_selectors, *DEFAULT_SELECTORS))


def judged_owner(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the judged controller that made `obj` (a DaemonSet of its Pod, a Deployment of its
    ReplicaSet), whose template was judged at the owner; None for anything else."""
    meta = obj.get("metadata")
    owners = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    for owner in owners if isinstance(owners, list) else ():
        if isinstance(owner, Mapping) and owner.get("kind") in JUDGED_OWNERS and owner.get("controller"):
            return str(owner["kind"]), str(owner.get("name") or "")
    return None


@dataclass(frozen=True)
class Unseen:
    """A workload the installed webhook is never called for, and why (the namespace, or the selector)."""

    namespace: str
    reason: str


def judge(
    obj: Mapping[str, Any],
    *,
    config: Config,
    inventory: Inventory | None,
    namespace_labels: Mapping[str, Mapping[str, str]],
    scope: Scope = EVERYTHING,
    source: str = "",
    namespace: str = "",
    uid: str = "",
    username: str = "",
    groups: frozenset[str] = frozenset(),
) -> Row | Unseen:
    """What the installed webhook would do to `obj` if it were applied now, or why it would never see it.
    ManifestError (a malformed pod spec) propagates, for the caller to name the document."""
    request = request_for(obj, namespace=namespace, uid=uid, username=username, groups=groups)
    labels = namespace_labels.get(request.namespace, {})
    meta = obj.get("metadata")
    object_labels = meta.get("labels") if isinstance(meta, Mapping) else None
    reason = scope.unseen(
        request.namespace, labels, object_labels if isinstance(object_labels, Mapping) else {}
    )
    if reason:
        return Unseen(request.namespace, reason)
    return row(obj, decide(request, config=config, inventory=inventory, namespace_labels=labels), source)


@dataclass(frozen=True)
class Judged:
    """What `check` made of its documents: rows, what the installed webhook never sees, what it skipped
    (other kinds, documents that are no object, objects made by a judged controller also given), and an
    error (naming the document) for each document that cannot be judged."""

    rows: list[Row]
    unseen: list[Unseen]
    skipped: list[str]
    not_objects: int
    owned: int
    errors: list[WebhookError]

    def summary(self, where: str, *, include_hint: bool) -> Summary:
        return Summary(
            self.rows, where, self.skipped, self.not_objects, self.unseen, self.owned, include_hint
        )


def _named(label: str, obj: Any, err: WebhookError) -> WebhookError:
    what = describe(label, obj)
    return type(err)(err.message, field=f"{what}: {err.field}" if err.field else what, fix=err.fix)


def _key(kind: str, meta: Any, name: str, namespace: str) -> tuple[str, str, str]:
    given = meta.get("namespace") if isinstance(meta, Mapping) else None
    return kind, str(given or namespace), name


def judge_documents(
    documents: Sequence[tuple[str, Any]],
    *,
    config: Config,
    inventory: Inventory | None,
    namespace_labels: Mapping[str, Mapping[str, str]],
    scope: Scope = EVERYTHING,
    namespace: str = "default",
    username: str = "",
    groups: frozenset[str] = frozenset(),
) -> Judged:
    """Every workload among `(label, parsed document)` judged as if applied now; other kinds skipped and
    counted; objects whose judged controller is given too (`kubectl get all -o yaml` has a Deployment, its
    ReplicaSets and their Pods) reported once, at the owner."""
    errors: list[WebhookError] = []
    classified = []
    for label, obj in documents:
        try:
            classified.append((label, obj, classify(obj)))
        except WebhookError as err:
            errors.append(_named(label, obj, err))
    given = set()
    for _, obj, what in classified:
        if what.role is Role.WORKLOAD:
            meta = obj.get("metadata")
            given.add(
                _key(what.kind, meta, str(meta.get("name") if isinstance(meta, Mapping) else ""), namespace)
            )
    rows: list[Row] = []
    unseen: list[Unseen] = []
    skipped: list[str] = []
    not_objects = owned = 0
    for n, (label, obj, what) in enumerate(classified):
        if what.role is Role.NOT_AN_OBJECT:
            not_objects += 1
            continue
        if what.role is Role.OTHER:
            skipped.append(what.label)
            continue
        owner = judged_owner(obj)
        if owner is not None and _key(owner[0], obj.get("metadata"), owner[1], namespace) in given:
            owned += 1
            continue
        try:
            result = judge(obj, config=config, inventory=inventory, namespace_labels=namespace_labels,
                           scope=scope, source=label, namespace=namespace, uid=f"check-{n}",
                           username=username, groups=groups)  # fmt: skip
        except WebhookError as err:
            errors.append(_named(label, obj, err))
            continue
        if isinstance(result, Unseen):
            unseen.append(result)
        else:
            rows.append(result)
    return Judged(rows, unseen, skipped, not_objects, owned, errors)


@dataclass(frozen=True)
class Scanned:
    rows: list[Row]
    unseen: list[Unseen]
    owned: int  # objects reported at their owner


def scan(
    objects: Iterable[Mapping[str, Any]],
    *,
    config: Config,
    inventory: Inventory,
    namespace_labels: Mapping[str, Mapping[str, str]],
    scope: Scope = EVERYTHING,
) -> Scanned:
    """Every workload of a cluster listing judged once: objects a judged controller owns are reported at
    the owner, other kinds are left out."""
    rows, unseen, owned = [], [], 0
    for obj in objects:
        if str(obj.get("kind") or "") not in POD_TEMPLATE_PATHS:
            continue
        if judged_owner(obj) is not None:
            owned += 1
            continue
        result = judge(
            obj, config=config, inventory=inventory, namespace_labels=namespace_labels, scope=scope
        )
        if isinstance(result, Unseen):
            unseen.append(result)
        else:
            rows.append(result)
    return Scanned(sorted(rows, key=lambda r: (r.namespace, r.kind, r.name)), unseen, owned)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _count(items: Iterable[str]) -> str:
    counts = Counter(items)
    return ", ".join(f"{n} {item}" for item, n in sorted(counts.items(), key=lambda c: (-c[1], c[0])))


@dataclass(frozen=True)
class Summary:
    """What one run judged and what it did not, for the line at the end and the JSON `summary`."""

    rows: Sequence[Row]
    where: str  # "3 files", "4 namespaces"
    skipped: Sequence[str] = ()  # the kind of each other object skipped (check)
    not_objects: int = 0  # documents that are not Kubernetes objects (no kind, no metadata)
    unseen: Sequence[Unseen] = ()
    owned: int = 0
    include_hint: bool = True  # say that --include-system-namespaces judges what the webhook never sees

    def verdicts(self) -> dict[str, int]:
        counts = Counter(r.verdict for r in self.rows)
        return {v: counts[v] for v in reversed(VERDICTS) if counts[v]}

    def line(self) -> str:
        verdicts = ", ".join(f"{n} {v}" for v, n in self.verdicts().items())
        exempt = sum(1 for r in self.rows if r.exempt)
        judged = f"judged {_plural(len(self.rows), 'workload')} in {self.where}"
        parts = [
            judged
            + (f": {verdicts}" if verdicts else "")
            + (f" ({exempt} exempt by the config)" if exempt else "")
        ]
        if self.skipped:
            parts.append(f"skipped {_plural(len(self.skipped), 'other object')}: {_count(self.skipped)}")
        if self.not_objects:
            what = (
                "that is not a Kubernetes object"
                if self.not_objects == 1
                else "that are not Kubernetes objects"
            )
            parts.append(f"skipped {_plural(self.not_objects, 'document')} {what}")
        if self.owned:
            parts.append(f"{self.owned} objects made by judged controllers are reported at their owner")
        if self.unseen:
            where = _count(
                u.reason if u.reason.startswith("webhook.") else f"in {u.reason}" for u in self.unseen
            )
            hint = "; --include-system-namespaces judges them" if self.include_hint else ""
            parts.append(f"not judged, as the installed webhook never sees them: {where}{hint}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "judged": len(self.rows),
            "verdicts": self.verdicts(),
            "exempt": sum(1 for r in self.rows if r.exempt),
            "skipped": dict(Counter(self.skipped)),
            "notObjects": self.not_objects,
            "ownedByJudgedControllers": self.owned,
            "notJudged": dict(Counter(u.reason for u in self.unseen)),
            "line": self.line(),
        }


def table(rows: Sequence[Row]) -> str:
    header = ("NAMESPACE", "KIND", "NAME", "VERDICT", "FINDINGS", "BREAKS ON", "DEGRADES ON", "NODES")
    lines = [header]
    for r in rows:
        checks = ",".join(dict.fromkeys(f.check for f in r.assessment.findings)) or "-"
        breaks = ",".join(r.pools(Effect.BREAKS)) or "-"
        degrades = ",".join(r.pools(Effect.DEGRADES)) or "-"
        coverage = r.coverage()
        nodes = f"{coverage['nodesAfter']}/{coverage['nodes']}" if coverage else "-"
        lines.append((r.namespace or "-", r.kind, r.name, r.verdict, checks, breaks, degrades, nodes))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


_RESULT = {"denied": "fail", "steered": "warn", "warned": "warn", "audited": "warn", "degraded": "warn",
           "allowed": "pass"}  # fmt: skip


@dataclass(frozen=True)
class ReportApi:
    """A PolicyReport API: its group and version, its namespaced and cluster kinds and their resources."""

    name: str  # the `-o` value
    group: str
    version: str
    kind: str
    plural: str
    cluster_kind: str
    cluster_plural: str
    has_source: bool  # a report-level `source` field

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


REPORT_APIS = {
    "policyreport": ReportApi("policyreport", "wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports",
                              "ClusterPolicyReport", "clusterpolicyreports", has_source=False),
    # Kyverno's successor API (openreports/reports-api): the same results, plus a report-level source.
    "openreports": ReportApi("openreports", "openreports.io", "v1alpha1", "Report", "reports",
                             "ClusterReport", "clusterreports", has_source=True),
}  # fmt: skip


def _properties(r: Row) -> dict[str, str]:
    properties = {"verdict": r.verdict}
    would = r.decision.validated.audit.get("would")
    if would:
        properties["wouldInEnforce"] = would
    if r.pools(Effect.BREAKS):
        properties["breaksOn"] = ",".join(r.pools(Effect.BREAKS))
    if r.pools(Effect.DEGRADES):
        properties["degradesOn"] = ",".join(r.pools(Effect.DEGRADES))
    coverage = r.coverage()
    if coverage:
        properties["nodes"], properties["nodesAfter"] = str(coverage["nodes"]), str(coverage["nodesAfter"])
    return properties


def policy_reports(
    rows: Sequence[Row], *, timestamp_seconds: int, api: ReportApi | None = None, name: str = POLICY_NAME
) -> list[dict[str, Any]]:
    """One report per namespace, called `name` and labelled as ours (so the next run replaces it): a
    result per finding, `pass` for a workload without one."""
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
                    "properties": _properties(r),
                    "resources": [resource], "timestamp": {"seconds": timestamp_seconds, "nanos": 0},
                }
            )  # fmt: skip
    reports = []
    for namespace, results in sorted(by_namespace.items()):
        summary = {
            k: sum(1 for r in results if r["result"] == k) for k in ("pass", "fail", "warn", "error", "skip")
        }
        metadata = {"name": name, "labels": {MANAGED_BY_LABEL: POLICY_NAME}}
        api = api or REPORT_APIS["policyreport"]
        kind = api.kind if namespace else api.cluster_kind
        if namespace:
            metadata["namespace"] = namespace
        report: dict[str, Any] = {"apiVersion": api.api_version, "kind": kind, "metadata": metadata}
        if api.has_source:
            report["source"] = POLICY_NAME
        reports.append(report | {"summary": summary, "results": results})
    return reports
