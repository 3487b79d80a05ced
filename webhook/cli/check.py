"""`check`: both webhooks on manifests from files or stdin, offline, against a node inventory.

Exit codes: 0 all allowed, 1 any denied, 2 bad input (the message names file, document, field).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from webhook.adapters.files import load_config, load_namespace_labels, load_nodes, read_documents
from webhook.cli.exits import EXIT_ALLOWED, EXIT_DENIED
from webhook.core import report
from webhook.core.admission import decide
from webhook.core.config import Mode
from webhook.core.placement import Inventory
from webhook.core.workloads import pod_spec_view
from webhook.errors import WebhookError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="judge manifests offline against a node inventory")
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, or - for stdin")
    p.add_argument("--config", help="config YAML (default: built-in defaults)")
    p.add_argument("--nodes", help="`kubectl get nodes -o yaml` output (default: embedded example inventory)")
    p.add_argument("--mode", choices=[m.value for m in Mode], help="override the config's mode")
    p.add_argument("--namespace-labels", help="YAML {namespace: {label: value}} or `kubectl get ns -o yaml`")
    p.add_argument("--namespace", default="default", help="namespace for objects that name none")
    p.add_argument("--user", default="", help="username the request comes from (for exemptions)")
    p.add_argument("--group", action="append", default=[], help="group of the user (repeatable)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(run=run)


def _text(result: dict[str, Any]) -> str:
    name = f"{result['kind']} {result['namespace']}/{result['name']}"
    head = result["verdict"].upper().ljust(9)
    where = [f"lands on: {', '.join(result['landsOn']) or '-'}"]
    where += [f"breaks on: {', '.join(result['breaksOn'])}"] if result["breaksOn"] else []
    where += [f"degrades on: {', '.join(result['degradedOn'])}"] if result["degradedOn"] else []
    lines = [f"{head}{name}  [{'; '.join(where)}]"]
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
    config = load_config(args.config)
    if args.mode:
        config = config.with_mode(Mode(args.mode))
    inventory = Inventory.build(load_nodes(args.nodes), config)
    namespaces = load_namespace_labels(args.namespace_labels)
    results = []
    for n, doc in enumerate(read_documents(args.paths)):
        request = report.request_for(doc.obj, namespace=args.namespace, uid=f"check-{n}", username=args.user,
                                     groups=frozenset(args.group))  # fmt: skip
        try:
            pod_spec_view(doc.obj)  # unknown kinds and missing pod specs are bad input here
            decision = decide(
                request,
                config=config,
                inventory=inventory,
                namespace_labels=namespaces.get(request.namespace, {}),
            )
        except WebhookError as err:
            raise type(err)(err.message, field=f"{doc.label}: {err.field}", fix=err.fix) from err
        results.append(report.row(doc.obj, decision, doc.label).to_json())
    if args.output == "json":
        print(json.dumps({"results": results}, indent=2))
    else:
        print("\n".join(_text(r) for r in results))
    return EXIT_DENIED if any(r["verdict"] == "denied" for r in results) else EXIT_ALLOWED
