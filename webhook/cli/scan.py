"""`scan`: what the installed webhook would do to every workload stored in a live cluster.

Lists only, unless --apply: then it writes one PolicyReport (or openreports.io Report) per namespace by
server-side apply and deletes its own reports in namespaces that no longer have any, so that a periodic
scan (the chart's `reports` CronJob) replaces its findings instead of piling them up.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import kubernetes.client

from webhook.adapters import cluster, listing, reports
from webhook.cli import options
from webhook.cli.output import emit
from webhook.core import report
from webhook.core.placement import Inventory, Node
from webhook.core.plan import make_plan
from webhook.core.scope import EVERYTHING
from webhook.errors import ClusterConfigError, ConfigError

OUTPUTS = ("table", "json", *report.REPORT_APIS)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scan", help="migration readiness: what the webhook would do to every workload")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then $KUBECONFIG)")
    options.add_config_arguments(p)
    p.add_argument("-n", "--namespace", help="one namespace (default: all)")
    p.add_argument("--assume-immutable", action="append", default=[], metavar="POOL=PROFILE",
                   help="judge as if this node pool already ran an immutable OS (repeatable)")  # fmt: skip
    options.add_outcome_arguments(p)
    p.add_argument("-o", "--output", choices=OUTPUTS, default="table",
                   help="policyreport: wgpolicyk8s.io/v1alpha2 PolicyReports; openreports: "
                   "openreports.io/v1alpha1 Reports (one per namespace, as a List)")  # fmt: skip
    p.add_argument("--apply", action="store_true",
                   help="with -o policyreport|openreports: write the reports to the cluster (server-side "
                   "apply) and delete this scanner's reports in namespaces without workloads")  # fmt: skip
    p.add_argument("--report-name", default=report.POLICY_NAME,
                   help=f"the name of every report written (default {report.POLICY_NAME})")  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    api_kind = report.REPORT_APIS.get(args.output)
    if args.apply and api_kind is None:
        raise ConfigError(
            "--apply writes reports", field="--apply", fix="add -o policyreport or -o openreports"
        )
    loaded = options.load_config(args)
    config = loaded.config
    scope = options.scope(args, loaded)
    assumptions = listing.parse_assumptions(args.assume_immutable)
    api = cluster.api_client_from(args.kubeconfig)
    try:
        found = listing.collect(api, args.namespace)
    except kubernetes.client.ApiException as err:
        fix = "the identity needs get/list on nodes, namespaces and workloads"
        raise ClusterConfigError(
            f"listing failed: {err.status} {err.reason}", field="--kubeconfig", fix=fix
        ) from err
    nodes = [Node.from_wire(n, f"node {n.get('metadata', {}).get('name')}") for n in found.nodes]
    if assumptions:
        config = report.what_if_config(config)
    inventory = Inventory.build(report.assume_immutable(nodes, assumptions), config)
    scanned = report.scan(
        found.workloads, config=config, inventory=inventory, namespace_labels=found.namespaces, scope=scope
    )
    rows = scanned.rows
    where = f"namespace {args.namespace}" if args.namespace else f"{len(found.namespaces)} namespaces"
    summary = report.Summary(rows, where, unseen=scanned.unseen, owned=scanned.owned,
                             include_hint=scope is not EVERYTHING)  # fmt: skip
    if api_kind is not None and args.apply:
        written = reports.publish(
            api,
            report.policy_reports(
                rows, timestamp_seconds=int(time.time()), api=api_kind, name=args.report_name
            ),
            api_kind,
            name=args.report_name,
            namespace=args.namespace,
        )
        emit(written.line())
        emit(summary.line())
        return options.exit_code(rows, args.fail_on)
    if not rows:
        where = f"namespace {args.namespace}" if args.namespace else "the cluster"
        fix = "scan a namespace that has workloads, or add --include-system-namespaces"
        raise ConfigError(f"nothing to judge: {summary.line()}", field=where, fix=fix)
    plan = make_plan(rows, config=config, inventory=inventory, namespace_labels=found.namespaces,
                     fail_on=args.fail_on)  # fmt: skip
    if api_kind is not None and not args.emit_config:
        items = report.policy_reports(
            rows, timestamp_seconds=int(time.time()), api=api_kind, name=args.report_name
        )
        emit(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
        options.note(summary.line())
        return options.exit_code(rows, args.fail_on)
    options.publish(args, rows, summary, plan, loaded, report.table)
    return options.exit_code(rows, args.fail_on)
