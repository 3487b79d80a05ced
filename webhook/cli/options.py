"""What `check` and `scan` share: where the config comes from, which namespaces the installed webhook sees,
what fails a run, and how the results, the summary and the plan are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from webhook.adapters.files import LoadedConfig, read_config, read_values, to_yaml
from webhook.cli.exits import EXIT_ALLOWED, EXIT_DENIED
from webhook.cli.output import emit
from webhook.core.config import DEFAULT_WEBHOOK_NAMESPACE, Mode
from webhook.core.plan import Plan, config_snippet
from webhook.core.report import FAIL_ON, Row, Summary, fails
from webhook.core.scope import EVERYTHING, Scope, installed_scope


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", help="config YAML (default: built-in defaults)")
    source.add_argument("--values", help="the chart's values file instead: its config: section, and the "
                        "namespaces and objects webhook: leaves out (excludeNamespaces, namespaceSelector, "
                        "objectSelector)")  # fmt: skip
    default = os.environ.get("POD_NAMESPACE") or DEFAULT_WEBHOOK_NAMESPACE
    p.add_argument("--webhook-namespace", default=default,
                   help="the namespace the webhook is installed in, never judged "
                   f"(default: $POD_NAMESPACE, else {DEFAULT_WEBHOOK_NAMESPACE})")  # fmt: skip
    p.add_argument("--include-system-namespaces", action="store_true",
                   help="also judge what the installed webhook never sees: kube-system, its own namespace "
                   "and the chart's webhook.excludeNamespaces and selectors")  # fmt: skip


def add_outcome_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fail-on", choices=FAIL_ON, default="denied",
                   help="exit 1 when a workload's verdict is this or worse (allowed < degraded < audited < "
                   "warned < steered < denied; never: exit 0 whatever is found); default denied")  # fmt: skip
    p.add_argument("--emit-config", choices=["config", "values"],
                   help="print only the config (a --config file, or Helm values under config:) that makes "
                   "this run pass; the summary and the plan go to stderr")  # fmt: skip


def load_config(args: argparse.Namespace) -> LoadedConfig:
    loaded = read_values(args.values) if args.values else read_config(args.config)
    mode = getattr(args, "mode", None)
    if mode:
        return LoadedConfig(loaded.config.with_mode(Mode(mode)), loaded.raw, loaded.webhook_values,
                            loaded.from_values)  # fmt: skip
    return loaded


def scope(args: argparse.Namespace, loaded: LoadedConfig) -> Scope:
    if args.include_system_namespaces:
        return EVERYTHING
    return installed_scope(args.webhook_namespace, loaded.webhook_values)


def exit_code(rows: list[Row], fail_on: str) -> int:
    return EXIT_DENIED if any(fails(r.verdict, fail_on) for r in rows) else EXIT_ALLOWED


def emit_config(form: str, loaded: LoadedConfig, plan: Plan, command: str) -> None:
    """The config that makes the run pass, with a comment per addition saying what it is for."""
    config = config_snippet(loaded.raw, plan)
    header = [f"# immutable-os-webhook: the config with which `{command}` passes --fail-on {plan.fail_on}."]
    for step, fix in plan.config_fixes():
        header.append(f"# for {step.row.display_name}: {fix.text}")
    if form == "values":
        config = {k: v for k, v in config.items() if k not in ("apiVersion", "kind")}  # the chart adds them
        emit("\n".join(header) + "\n" + to_yaml({"config": config}).rstrip())
    else:
        emit("\n".join(header) + "\n" + to_yaml(config).rstrip())


def note(text: str) -> None:
    print(text, file=sys.stderr)


def publish(args: argparse.Namespace, rows: list[Row], summary: Summary, plan: Plan, loaded: LoadedConfig,
            text: Callable[[list[Row]], str]) -> None:  # fmt: skip
    """Print the run: `--emit-config` (the config to stdout, the rest to stderr), JSON, or text (`text`
    renders the rows)."""
    if args.emit_config:
        emit_config(args.emit_config, loaded, plan, args.command)
        for line in [*plan.lines(), summary.line()]:
            note(line)
    elif args.output == "json":
        emit(json.dumps({"results": [r.to_json() for r in rows], "summary": summary.to_json(),
                         "plan": plan.to_json()}, indent=2))  # fmt: skip
    else:
        emit(text(rows))
        if plan.steps:
            emit("\n".join(plan.lines()))
        emit(summary.line())
