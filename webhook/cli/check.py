"""`check`: both webhooks on manifests from files or stdin, offline, against a node inventory.

Workloads are judged as the installed webhook would (kube-system and its own namespace left out unless
--include-system-namespaces); every other object is skipped and counted. Exit codes: 0 nothing at or above
--fail-on, 1 something is, 2 bad input or nothing to judge (the message names file, document, field).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from webhook.adapters.files import load_namespace_labels, load_nodes, read_manifests
from webhook.cli import options
from webhook.core import report
from webhook.core.config import Mode
from webhook.core.manifests import WORKLOAD_API_VERSIONS
from webhook.core.placement import Inventory
from webhook.core.plan import make_plan
from webhook.core.scope import EVERYTHING
from webhook.errors import ManifestError, ManifestErrors


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="judge manifests offline against a node inventory")
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, or - for stdin")
    options.add_config_arguments(p)
    p.add_argument("--nodes", help="`kubectl get nodes -o yaml` output (default: embedded example inventory)")
    p.add_argument("--mode", choices=[m.value for m in Mode], help="override the config's mode")
    p.add_argument("--namespace-labels", help="YAML {namespace: {label: value}} or `kubectl get ns -o yaml`")
    p.add_argument("--namespace", default="default", help="namespace for objects that name none")
    p.add_argument("--user", default="", help="username the request comes from (for exemptions)")
    p.add_argument("--group", action="append", default=[], help="group of the user (repeatable)")
    options.add_outcome_arguments(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(run=run)


def text(rows: list[report.Row]) -> str:
    return "\n".join(_text(r) for r in rows)


def _text(r: report.Row) -> str:
    result = r.to_json()
    head = result["verdict"].upper().ljust(9)
    where = [f"lands on: {', '.join(result['landsOn']) or '-'}"]
    where += [f"breaks on: {', '.join(result['breaksOn'])}"] if result["breaksOn"] else []
    where += [f"degrades on: {', '.join(result['degradedOn'])}"] if result["degradedOn"] else []
    lines = [f"{head}{r.display_name}  [{'; '.join(where)}]"]
    lines += [f"    {f['check']}: {f['field']}: {f['message']}" for f in result["findings"]]
    if result.get("message"):
        lines.append(f"    denied: {result['message']}")
    lines += [f"    warning: {w}" for w in result["warnings"]]
    coverage = result.get("coverage")
    if coverage:
        lines.append(f"    coverage: {coverage['nodesAfter']} of {coverage['nodes']} nodes")
    if result["patch"]:
        lines.append(f"    patch: {json.dumps(result['patch'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    loaded = options.load_config(args)
    config = loaded.config
    scope = options.scope(args, loaded)
    inventory = Inventory.build(load_nodes(args.nodes), config)
    namespaces = load_namespace_labels(args.namespace_labels)
    manifests = read_manifests(args.paths)
    judged = report.judge_documents(
        [(doc.label, doc.obj) for doc in manifests.documents], config=config, inventory=inventory,
        namespace_labels=namespaces, scope=scope, namespace=args.namespace, username=args.user,
        groups=frozenset(args.group),
    )  # fmt: skip
    errors = [*manifests.errors, *judged.errors]
    if errors:
        raise errors[0] if len(errors) == 1 else ManifestErrors(errors)
    files = f"{len(manifests.files)} file" + ("" if len(manifests.files) == 1 else "s")
    summary = judged.summary(files, include_hint=scope is not EVERYTHING)
    if not judged.rows:
        raise _nothing_to_judge(args.paths, manifests.documents, summary)
    plan = make_plan(judged.rows, config=config, inventory=inventory, namespace_labels=namespaces,
                     fail_on=args.fail_on)  # fmt: skip
    options.publish(args, judged.rows, summary, plan, loaded, text)
    return options.exit_code(judged.rows, args.fail_on)


def _nothing_to_judge(paths: list[str], documents: Any, summary: report.Summary) -> ManifestError:
    where = ", ".join(paths)
    if not documents:
        fix = "give Kubernetes manifests: multi-document YAML, JSON or a List"
        return ManifestError("nothing to judge: no documents", field=where, fix=fix)
    fix = f"give workloads: {', '.join(WORKLOAD_API_VERSIONS)}"
    if summary.unseen:
        fix = "add --include-system-namespaces to judge what the installed webhook never sees"
    return ManifestError(
        f"nothing to judge: {replace(summary, include_hint=False).line()}", field=where, fix=fix
    )
