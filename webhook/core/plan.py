"""The migration plan: for each workload a run fails on, the smallest change that makes it pass, proven by
judging it again with the change; the config a reviewer can apply; and what steering costs each steered
workload (the pools it leaves, and for a DaemonSet the nodes it still covers).

Changes, smallest first; the first that passes is the fix:
1. read-only: mount the host paths it writes read-only (its manifest; right only if it just reads there);
2. allowedHostPaths: the webhook stops judging those paths (config, every namespace; the pods may still
   break where they land);
3. a namespace mode label, the strictest that passes (`immutable-os.io/mode=warn`, then audit, then off);
4. an exemption of its namespace (config).
Each fix that is not itself in the config comes with the config change that would do (2, else 4), so that
the emitted config alone makes the same input pass.
"""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.core.admission import decide
from webhook.core.assessment import Status
from webhook.core.config import (
    CONFIG_API_VERSION,
    CONFIG_KIND,
    NAMESPACE_MODE_LABEL,
    Config,
    HostPathRule,
    Mode,
)
from webhook.core.contracts import Effect, normalise
from webhook.core.placement import Inventory
from webhook.core.policy.host_path import CREATING_TYPES
from webhook.core.report import Row, fails, row
from webhook.core.workloads import CONTAINER_FIELDS, POD_TEMPLATE_PATHS

_VOLUME = re.compile(r"volumes\[(\d+)\]\.hostPath\.path$")
LENIENT_MODES = (Mode.WARN, Mode.AUDIT, Mode.OFF)


class FixKind(enum.Enum):
    READ_ONLY = "read-only"
    ALLOWED_HOST_PATHS = "allowedHostPaths"
    NAMESPACE_MODE = "namespace mode"
    EXEMPTION = "exemption"

    @property
    def in_config(self) -> bool:
        return self in (FixKind.ALLOWED_HOST_PATHS, FixKind.EXEMPTION)


@dataclass(frozen=True)
class Fix:
    kind: FixKind
    text: str  # what to do, in one line
    verdict: str  # the workload's verdict once done
    host_paths: tuple[HostPathRule, ...] = ()  # ALLOWED_HOST_PATHS
    namespace: str = ""  # NAMESPACE_MODE, EXEMPTION
    mode: Mode | None = None  # NAMESPACE_MODE
    fixed_object: Mapping[str, Any] | None = None  # READ_ONLY: the manifest as changed

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"kind": self.kind.value, "text": self.text, "verdictAfter": self.verdict}
        if self.host_paths:
            result["allowedHostPaths"] = [_rule(r) for r in self.host_paths]
        if self.namespace:
            result["namespace"] = self.namespace
        if self.mode is not None:
            result["label"] = {NAMESPACE_MODE_LABEL: self.mode.value}
        return result


@dataclass(frozen=True)
class Step:
    """One workload of the plan: one that fails the run, one that is steered, or both."""

    row: Row
    fails: bool
    fix: Fix | None = None  # the smallest change that makes it pass (when it fails)
    config_fix: Fix | None = None  # the config change that does, when `fix` is not one
    keeps_every_pool: Fix | None = None  # for a steered workload: the change that lets it stay everywhere

    @property
    def steering(self) -> str:
        """What steering costs: `will not run on pool acl (3 nodes); covers 2 of 5 nodes`."""
        r = self.row
        if r.verdict != "steered":
            return ""
        pools = ", ".join(p.describe().removeprefix("pool ") for p in r.assessment.breaks)
        coverage = r.coverage()
        if coverage is None:
            return f"its pods will not land on pool {pools}"
        return f"will not run on pool {pools}; covers {coverage['nodesAfter']} of {coverage['nodes']} nodes"

    def to_json(self) -> dict[str, Any]:
        r = self.row
        result: dict[str, Any] = {"kind": r.kind, "namespace": r.namespace, "name": r.name,
                                  "verdict": r.verdict, "fails": self.fails}  # fmt: skip
        if self.steering:
            result["steering"] = self.steering
        for key, fix in (
            ("fix", self.fix),
            ("configFix", self.config_fix),
            ("keepsEveryPool", self.keeps_every_pool),
        ):
            if fix is not None:
                result[key] = fix.to_json()
        return result


@dataclass(frozen=True)
class Plan:
    fail_on: str
    steps: tuple[Step, ...]

    @property
    def failing(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.fails)

    def config_fixes(self) -> tuple[tuple[Step, Fix], ...]:
        found = []
        for step in self.failing:
            fix = step.fix if step.fix is not None and step.fix.kind.in_config else step.config_fix
            if fix is not None:
                found.append((step, fix))
        return tuple(found)

    def lines(self) -> list[str]:
        lines = []
        failing, steered = self.failing, [s for s in self.steps if not s.fails]
        if failing:
            noun = "workload fails" if len(failing) == 1 else "workloads fail"
            lines.append(f"plan: {len(failing)} {noun} --fail-on {self.fail_on}; the smallest fix for each:")
            lines += self._lines(failing)
        if steered:
            lines.append(f"steered, passing --fail-on {self.fail_on}: what steering costs")
            lines += self._lines(steered)
        if self.config_fixes():
            lines.append("--emit-config config|values prints the config with which this run passes")
        return lines

    @staticmethod
    def _lines(steps: Sequence[Step]) -> list[str]:
        lines = []
        for step in steps:
            r = step.row
            breaks = ", ".join(r.pools(Effect.BREAKS))
            lines.append(f"  {r.display_name}: {r.verdict}" + (f" (breaks on {breaks})" if breaks else ""))
            if step.steering:
                lines.append(f"    steered: {step.steering}")
            if step.fix is not None:
                lines.append(f"    fix: {step.fix.text}")
            if step.config_fix is not None:
                lines.append(f"    or in the config: {step.config_fix.text}")
            if step.keeps_every_pool is not None:
                lines.append(f"    to keep it on every pool: {step.keeps_every_pool.text}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"failOn": self.fail_on, "steps": [s.to_json() for s in self.steps]}


class _Judge:
    """Judges a row's object again under a change: another manifest, config or namespace label."""

    def __init__(self, config: Config, inventory: Inventory | None,
                 namespace_labels: Mapping[str, Mapping[str, str]], fail_on: str) -> None:  # fmt: skip
        self.config, self.inventory, self.namespace_labels = config, inventory, namespace_labels
        self.fail_on = fail_on

    def again(self, r: Row, *, obj: Mapping[str, Any] | None = None, config: Config | None = None,
              mode: Mode | None = None) -> Row:  # fmt: skip
        request = r.assessment.request
        if obj is not None:
            request = replace(request, object=obj)
        labels = dict(self.namespace_labels.get(request.namespace, {}))
        if mode is not None:
            labels[NAMESPACE_MODE_LABEL] = mode.value
        decision = decide(
            request, config=config or self.config, inventory=self.inventory, namespace_labels=labels
        )
        return row(request.object or {}, decision, r.source)

    def passes(self, r: Row) -> bool:
        return not fails(r.verdict, self.fail_on)


def _rule(rule: HostPathRule) -> dict[str, Any]:
    return {"pathPrefix": rule.path_prefix, "readOnly": rule.read_only}


def _spec(obj: Mapping[str, Any], kind: str) -> Any:
    node: Any = obj
    for part in (*POD_TEMPLATE_PATHS[kind], "spec"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _host_path_volumes(r: Row) -> list[tuple[str, str, str, bool]]:
    """(volume name, host path, field, written) for each host-path finding on a pool it breaks or
    degrades on."""
    a = r.assessment
    reasons = [reason for p in (*a.breaks, *a.degrades) for reason in p.reasons]
    spec = _spec(a.request.object or {}, r.kind)
    volumes = spec.get("volumes") if isinstance(spec, Mapping) else None
    found = []
    for finding in a.findings:
        match = _VOLUME.search(finding.field)
        if finding.check != "host-path" or match is None or not any(finding.field in x for x in reasons):
            continue
        volume = volumes[int(match[1])] if isinstance(volumes, list) and int(match[1]) < len(volumes) else {}
        name, path = str(volume.get("name", "")), str((volume.get("hostPath") or {}).get("path", ""))
        found.append((name, path, finding.field, any(p.writes for p in finding.paths)))
    return found


def read_only(obj: Mapping[str, Any], kind: str, volumes: Sequence[str]) -> dict[str, Any]:
    """`obj` with every mount of these volumes read-only, and a creating hostPath type (DirectoryOrCreate)
    replaced by the plain one (Directory): the kubelet then writes nothing there either."""
    fixed: dict[str, Any] = copy.deepcopy(dict(obj))
    spec = _spec(fixed, kind)
    for volume in spec.get("volumes") or []:
        host_path = volume.get("hostPath") if isinstance(volume, dict) else None
        if (
            volume.get("name") in volumes
            and isinstance(host_path, dict)
            and host_path.get("type") in CREATING_TYPES
        ):
            host_path["type"] = host_path["type"].removesuffix("OrCreate")
    for field in CONTAINER_FIELDS:
        for container in spec.get(field) or []:
            for mount in container.get("volumeMounts") or [] if isinstance(container, dict) else []:
                if isinstance(mount, dict) and mount.get("name") in volumes:
                    mount["readOnly"] = True
    return fixed


def _read_only_fix(judge: _Judge, r: Row, need_pass: bool) -> Fix | None:
    volumes = _host_path_volumes(r)
    if not volumes or r.assessment.request.object is None:
        return None
    fixed = read_only(r.assessment.request.object, r.kind, [v[0] for v in volumes])
    after = judge.again(r, obj=fixed)
    ok = judge.passes(after) if need_pass else not after.pools(Effect.BREAKS)
    if not ok:
        return None
    what = ", ".join(
        f'{path} (volume "{name}", {field.removesuffix(".hostPath.path")})'
        for name, path, field, _ in volumes
    )
    return Fix(FixKind.READ_ONLY, f"mount {what} read-only, if {r.name} only reads there", after.verdict,
               fixed_object=fixed)  # fmt: skip


def _allowed_paths_fix(judge: _Judge, r: Row) -> Fix | None:
    volumes = _host_path_volumes(r)
    if not volumes:
        return None
    rules = tuple(dict.fromkeys(HostPathRule(path, read_only=not written) for _, path, _, written in volumes))
    if any(len(normalise(rule.path_prefix).split("/")) < 3 for rule in rules):
        return None  # allowing all of /, /usr or /etc everywhere is more than exempting one namespace
    config = replace(judge.config, allowed_host_paths=judge.config.allowed_host_paths + rules)
    after = judge.again(r, config=config)
    if not judge.passes(after):
        return None
    entries = ", ".join("{" + ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}"
                                        for k, v in _rule(rule).items()) + "}" for rule in rules)  # fmt: skip
    breaks = ", ".join(r.pools(Effect.BREAKS))
    risk = f"; its pods may still break on {breaks}" if breaks else ""
    text = f"allowedHostPaths {entries} (the webhook stops judging these paths in every namespace{risk})"
    return Fix(FixKind.ALLOWED_HOST_PATHS, text, after.verdict, host_paths=rules)


_MODE_EFFECT = {
    Mode.WARN: "admitted unchanged, with a warning",
    Mode.AUDIT: "admitted unchanged, recorded in the audit log",
    Mode.OFF: "not judged",
}


def _mode_fix(judge: _Judge, r: Row) -> Fix | None:
    current = r.assessment.mode if r.assessment.status is Status.JUDGED else None
    for mode in LENIENT_MODES:
        if mode is current:
            continue
        after = judge.again(r, mode=mode)
        if judge.passes(after):
            what = _MODE_EFFECT[mode]
            breaks = ", ".join(r.pools(Effect.BREAKS))
            risk = f"; it still breaks on {breaks}" if breaks else ""
            return Fix(FixKind.NAMESPACE_MODE, f"kubectl label namespace {r.namespace} "
                       f"{NAMESPACE_MODE_LABEL}={mode.value} --overwrite ({what}{risk})", after.verdict,
                       namespace=r.namespace, mode=mode)  # fmt: skip
    return None


def _exemption_fix(judge: _Judge, r: Row) -> Fix | None:
    if not r.namespace:
        return None
    after = judge.again(r, config=judge.config.exempting([r.namespace]))
    if not judge.passes(after):
        return None
    text = f"exemptions.namespaces [{r.namespace}] (nothing in {r.namespace} is judged)"
    return Fix(FixKind.EXEMPTION, text, after.verdict, namespace=r.namespace)


def make_plan(
    rows: Sequence[Row],
    *,
    config: Config,
    inventory: Inventory | None,
    namespace_labels: Mapping[str, Mapping[str, str]],
    fail_on: str,
) -> Plan:
    judge = _Judge(config, inventory, namespace_labels, fail_on)
    steps = []
    for r in rows:
        failing = fails(r.verdict, fail_on)
        if not failing and r.verdict != "steered":
            continue
        if not failing:
            steps.append(Step(r, False, keeps_every_pool=_read_only_fix(judge, r, need_pass=False)))
            continue
        fix = (_read_only_fix(judge, r, need_pass=True) or _allowed_paths_fix(judge, r) or _mode_fix(judge, r)
               or _exemption_fix(judge, r))  # fmt: skip
        config_fix = None
        if fix is None or not fix.kind.in_config:
            config_fix = _allowed_paths_fix(judge, r) or _exemption_fix(judge, r)
        steps.append(Step(r, True, fix, config_fix))
    return Plan(fail_on, tuple(steps))


def _covers(entry: Mapping[str, Any], rule: HostPathRule) -> bool:
    """Whether an allowedHostPaths entry already allows all that `rule` would."""
    prefix = entry.get("pathPrefix")
    writable = not entry.get("readOnly", False)
    return (
        isinstance(prefix, str)
        and HostPathRule(prefix).covers(rule.path_prefix)
        and (writable or rule.read_only)
    )


def config_snippet(raw: Mapping[str, Any] | None, plan: Plan) -> dict[str, Any]:
    """The config `raw` (a config file's mapping; None for the defaults) with the plan's config fixes
    added: what `--emit-config` prints."""
    config: dict[str, Any] = {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND} | copy.deepcopy(
        dict(raw or {})
    )
    paths = list(config.get("allowedHostPaths") or [])
    exemptions = dict(config.get("exemptions") or {})
    namespaces = list(exemptions.get("namespaces") or [])
    for _, fix in plan.config_fixes():
        for rule in fix.host_paths:
            same = next((p for p in paths if p.get("pathPrefix") == rule.path_prefix), None)
            if same is not None:
                if same.get("readOnly", False) and not rule.read_only:
                    same["readOnly"] = False  # one writable rule covers reading too
            elif not any(_covers(p, rule) for p in paths):
                paths.append(_rule(rule))
        if fix.kind is FixKind.EXEMPTION and fix.namespace not in namespaces:
            namespaces.append(fix.namespace)
    if paths:
        config["allowedHostPaths"] = paths
    if namespaces:
        config["exemptions"] = exemptions | {"namespaces": namespaces}
    return config
