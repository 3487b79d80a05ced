"""Command line: `check` (the decision on manifests, offline), `serve`, `scan`, `certs`.

Exit codes of `check`: 0 all allowed, 1 any denied, 2 bad input (the message names file, document, field).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import kubernetes.client

from webhook import __version__
from webhook.adapters import certs, cluster, listing, tls
from webhook.adapters import http as server
from webhook.adapters.files import load_config, load_namespace_labels, load_nodes, read_documents
from webhook.core import report
from webhook.core.admission import decide
from webhook.core.config import Mode
from webhook.core.placement import Inventory, Node
from webhook.core.workloads import pod_spec_view
from webhook.errors import ConfigError, WebhookError

EXIT_ALLOWED, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2


def _check_parser(sub: Any) -> None:
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
    p.set_defaults(run=run_check)


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


def run_check(args: argparse.Namespace) -> int:
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


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve /mutate and /validate over HTTPS")
    p.add_argument("--config", help="config YAML (default: built-in defaults)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--cert-file", required=True, help="serving certificate (PEM); reloaded when it changes")
    p.add_argument("--key-file", required=True, help="serving key (PEM)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--kubeconfig", help="kubeconfig for the node and namespace watch (default: in-cluster)"
    )
    source.add_argument(
        "--nodes-file", help="static node inventory (`kubectl get nodes -o yaml`), no API access"
    )
    source.add_argument(
        "--example-nodes", action="store_true", help="the embedded example inventory, no API access"
    )
    p.add_argument("--namespace-labels", help="with a static inventory: YAML {namespace: {label: value}}")
    p.add_argument("--own-namespace", default=os.environ.get("POD_NAMESPACE", ""),
                   help="the webhook's own namespace, always exempt (default: $POD_NAMESPACE)")  # fmt: skip
    p.add_argument("--label-nodes", action="store_true",
                   help="keep immutable-os.io/profile=<profile> on nodes whose own evidence says so "
                   "(server-side apply; needs patch on nodes)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = load_config(args.config)
    if args.own_namespace:
        exemptions = replace(
            config.exemptions, namespaces=config.exemptions.namespaces | {args.own_namespace}
        )
        config = replace(config, exemptions=exemptions)
    state = server.InventoryState(config)
    mirror = None
    labeller = None
    source: server.InventorySource
    if args.nodes_file or args.example_nodes:
        if args.label_nodes:
            raise ConfigError(
                "labels live nodes, so it needs the node watch",
                field="--label-nodes",
                fix="drop --nodes-file/--example-nodes, or drop --label-nodes",
            )
        nodes = load_nodes(args.nodes_file)
        state.replace_nodes(nodes)
        state.namespaces = load_namespace_labels(args.namespace_labels)
        source = server.StaticSource()
    else:
        api = cluster.api_client_from(args.kubeconfig)  # a ClusterConfigError names the flag and the fix
        on_nodes: cluster.OnChange = state.set_nodes
        if args.label_nodes:
            labeller = cluster.NodeLabeller(cluster.server_side_apply(api), config)
            on_nodes = cluster.publish_to(labeller.observe, state.set_nodes)
        mirror = cluster.ClusterMirror(api, on_nodes, state.set_namespaces)
        source = server.ClusterSource(mirror, config.max_inventory_staleness_seconds)
    try:
        reloader = tls.CertReloader(args.cert_file, args.key_file)
    except tls.ServingCertificateError as err:
        print(f"error: --cert-file/--key-file: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    service = server.AdmissionService(config, state, source)
    options = server.ServeOptions(args.host, args.port, args.cert_file, args.key_file)
    if labeller is not None:
        labeller.start()
    if mirror is not None:
        mirror.start()
    try:
        asyncio.run(server.serve(server.create_app(service), options, reloader))
    finally:
        if mirror is not None:
            mirror.stop()
        if labeller is not None:
            labeller.stop()
    return 0


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's `fields` (from `extra`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                                 "logger": record.name, "msg": record.getMessage()}  # fmt: skip
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level != "debug":
        # urllib3 warns on each of its quick internal retries of a refused connection; the cluster
        # mirrors report the failed attempt itself, and how many came in a row.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _scan_parser(sub: Any) -> None:
    p = sub.add_parser("scan", help="migration readiness: what the webhook would do to every workload")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--config", help="config YAML (default: built-in defaults)")
    p.add_argument("-n", "--namespace", help="one namespace (default: all)")
    p.add_argument("--assume-immutable", action="append", default=[], metavar="POOL=PROFILE",
                   help="judge as if this node pool already ran an immutable OS (repeatable)")  # fmt: skip
    p.add_argument("-o", "--output", choices=["table", "json", "policyreport"], default="table")
    p.set_defaults(run=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    assumptions = listing.parse_assumptions(args.assume_immutable)
    api = cluster.api_client_from(args.kubeconfig)
    try:
        found = listing.collect(api, args.namespace)
    except kubernetes.client.ApiException as err:
        fix = "the identity needs get/list on nodes, namespaces and workloads"
        raise ConfigError(
            f"listing failed: {err.status} {err.reason}", field="--kubeconfig", fix=fix
        ) from err
    nodes = [Node.from_wire(n, f"node {n.get('metadata', {}).get('name')}") for n in found.nodes]
    inventory = Inventory.build(report.assume_immutable(nodes, assumptions), config)
    rows = report.scan(found.workloads, config=config, inventory=inventory, namespace_labels=found.namespaces)
    if args.output == "json":
        print(json.dumps({"results": [r.to_json() for r in rows]}, indent=2))
    elif args.output == "policyreport":
        reports = report.policy_reports(rows, timestamp_seconds=int(time.time()))
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": reports}, indent=2))
    else:
        print(report.table(rows))
    return EXIT_DENIED if any(r.verdict == "denied" for r in rows) else EXIT_ALLOWED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webhook", description="Keep host-bound pods off immutable-OS node pools."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _check_parser(sub)
    _serve_parser(sub)
    _scan_parser(sub)
    certs_parser = sub.add_parser("certs", help="generate a CA and a serving certificate; print the caBundle")
    certs.configure_parser(certs_parser)
    certs_parser.set_defaults(run=certs.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except WebhookError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code
