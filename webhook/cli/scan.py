"""`scan`: what the webhook would do to every workload stored in a live cluster (read-only)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import kubernetes.client

from webhook.adapters import cluster, listing
from webhook.adapters.files import load_config
from webhook.cli.exits import EXIT_ALLOWED, EXIT_DENIED
from webhook.core import report
from webhook.core.placement import Inventory, Node
from webhook.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scan", help="migration readiness: what the webhook would do to every workload")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--config", help="config YAML (default: built-in defaults)")
    p.add_argument("-n", "--namespace", help="one namespace (default: all)")
    p.add_argument("--assume-immutable", action="append", default=[], metavar="POOL=PROFILE",
                   help="judge as if this node pool already ran an immutable OS (repeatable)")  # fmt: skip
    p.add_argument("-o", "--output", choices=["table", "json", "policyreport"], default="table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
