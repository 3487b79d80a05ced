"""`serve`: the HTTPS service, with the node and namespace watch (or a static inventory) behind it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from typing import Any

from webhook.adapters import cluster, tls
from webhook.adapters.files import load_config, load_namespace_labels, load_nodes
from webhook.adapters.http.app import create_app
from webhook.adapters.http.connections import ConnectionLimits
from webhook.adapters.http.inventory import InventoryState
from webhook.adapters.http.logs import LineHandler
from webhook.adapters.http.serve import DRAIN_SECONDS, ServeOptions, serve
from webhook.adapters.http.service import AdmissionService
from webhook.adapters.http.sources import ClusterSource, InventorySource, StaticSource
from webhook.core.config import never_judged
from webhook.errors import ConfigError, ServingCertificateError


def add_parser(sub: Any) -> None:
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
                   help="the webhook's own namespace, never judged as kube-system is not "
                   "(default: $POD_NAMESPACE)")  # fmt: skip
    p.add_argument("--label-nodes", action="store_true",
                   help="keep immutable-os.io/profile=<profile> on nodes whose own evidence says so "
                   "(server-side apply; needs patch on nodes)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--drain-seconds", type=_positive, default=DRAIN_SECONDS, metavar="S",
                   help="after SIGTERM, serve open connections (answering with Connection: close) for at "
                   f"most S seconds (default {DRAIN_SECONDS:g}; keep it below the pod's "
                   "terminationGracePeriodSeconds minus its preStop sleep)")  # fmt: skip
    cap = ConnectionLimits().max_connections
    p.add_argument("--max-connections", type=_positive_int, default=cap, metavar="N",
                   help="open client connections at most; past it the least recently active one that is "
                   f"not being answered is closed (default {cap})")  # fmt: skip
    p.set_defaults(run=run)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return int(text)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    config = load_config(args.config)
    # The namespaces the chart never sends (kube-system, its own), exempt here too for hand-made
    # webhook configurations: the one list check and scan also leave out.
    config = config.exempting(never_judged(args.own_namespace))
    state = InventoryState(config)
    mirror = None
    labeller = None
    source: InventorySource
    if args.nodes_file or args.example_nodes:
        if args.label_nodes:
            raise ConfigError(
                "labels live nodes, so it needs the node watch",
                field="--label-nodes",
                fix="drop --nodes-file/--example-nodes, or drop --label-nodes",
            )
        state.replace_nodes(load_nodes(args.nodes_file))
        state.replace_namespaces(load_namespace_labels(args.namespace_labels))
        source = StaticSource()
    else:
        api = cluster.api_client_from(args.kubeconfig)  # a ClusterConfigError names the flag and the fix
        on_nodes: cluster.OnChange = state.set_nodes
        if args.label_nodes:
            labeller = cluster.NodeLabeller(cluster.server_side_apply(api), config)
            on_nodes = cluster.publish_to(labeller.observe, state.set_nodes)
        staleness = config.max_inventory_staleness_seconds
        renewal = cluster.watch_timeout_within(staleness)
        mirror = cluster.ClusterMirror(api, on_nodes, state.set_namespaces, watch_timeout_seconds=renewal)
        source = ClusterSource(mirror, staleness)
    try:
        reloader = tls.CertReloader(args.cert_file, args.key_file)
    except ServingCertificateError as err:
        raise ServingCertificateError(err.message, field="--cert-file/--key-file", fix=err.fix) from err
    service = AdmissionService(config, state, source)
    limits = replace(ConnectionLimits(), max_connections=args.max_connections)
    options = ServeOptions(args.host, args.port, args.cert_file, args.key_file,
                           drain_seconds=args.drain_seconds, limits=limits)  # fmt: skip
    if labeller is not None:
        labeller.start()
    if mirror is not None:
        mirror.start()
    try:
        asyncio.run(serve(create_app(service), options, reloader, service.metrics.connections))
    finally:
        if mirror is not None:
            mirror.stop()
        if labeller is not None:
            labeller.stop()
    return 0


def configure_logging(level: str) -> None:
    handler = LineHandler(sys.stdout)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The formatter writes none of these; the logging HOWTO's "Optimization" switches skip collecting
    # them for every record (the caller's frame walk is the dearest).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if level != "debug":
        # urllib3 warns on each of its quick internal retries of a refused connection; the cluster
        # mirrors report the failed attempt itself, and how many came in a row.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
