"""Configuration: modes, checks, allowed host paths, immutable-OS profiles, steering, exemptions.

`Config.from_dict` validates a plain mapping (parsed YAML) and names the key and the fix on any error;
`BUILTIN_PROFILES` is the one table of evidence that makes a node immutable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from webhook.core.contracts import Access, CodeIntegrity, Effect, HostContract, Tree
from webhook.core.profiles import (
    BUILTIN_PROFILES,
    GENERIC_CONTRACT,
    GENERIC_DISPLAY_NAME,
    PREFIX,
    PROFILE_LABEL,
    Profile,
)
from webhook.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")
# Entries a memo (`Memo`) holds before it starts over. With content keys of at most MAX_MEMO_KEY_BYTES,
# a memo holds at most 16 MiB of keys, whatever the reviews.
MEMO_ENTRIES = 1024
# Judgements (assessment._judgement): one per workload with host access (one per node for a DaemonSet's
# pods), each keeping both its content keys, which the other memos may have let go. bench/fuzz.py, RSS at
# the end of 100,000 fuzzed reviews: 1,024 entries left 3-5 MiB more than before judgements were kept,
# 256 and 64 alike about 1 MiB (which the texts PoolEffects keep account for); a cluster with more than
# 256 such workloads pays a judgement (~0.1 ms) when one comes round again.
JUDGEMENT_ENTRIES = 256
MAX_MEMO_KEY_BYTES = 16 * 1024

NAMESPACE_MODE_LABEL = f"{PREFIX}/mode"
STEERED_ANNOTATION = f"{PREFIX}/steered"

# The namespaces the installed webhook never judges besides its own: the chart's namespaceSelector excludes
# them (hack/generate-chart.py writes this list into the chart), and `check` and `scan` leave them out by
# default; `serve` should exempt them with its own namespace (`never_judged`), so that all four agree.
SYSTEM_NAMESPACES = ("kube-system",)
# Where the install docs put the webhook; `check` and `scan` assume it unless told (or $POD_NAMESPACE).
DEFAULT_WEBHOOK_NAMESPACE = "immutable-os-webhook"


def never_judged(webhook_namespace: str) -> tuple[str, ...]:
    """The namespaces a webhook installed in `webhook_namespace` never judges: kube-system and its own."""
    return tuple(dict.fromkeys((*SYSTEM_NAMESPACES, *((webhook_namespace,) if webhook_namespace else ()))))


class Mode(enum.Enum):
    """What happens to a pod that needs host access and can only land on immutable nodes."""

    ENFORCE = "enforce"
    WARN = "warn"
    AUDIT = "audit"
    OFF = "off"


class Severity(enum.Enum):
    """`error` findings follow the mode; `warning` findings never deny, they warn instead."""

    ERROR = "error"
    WARNING = "warning"


class SteeringStrategy(enum.Enum):
    AFFINITY = "affinity"
    NODE_SELECTOR = "nodeSelector"


class DaemonSetPolicy(enum.Enum):
    """What enforce does with a DaemonSet (or its pod) that breaks on some of the pools it covers."""

    STEER = "steer"  # keep it off those pools: they lose the agent
    DENY = "deny"  # refuse it: the operator fixes the manifest first
    WARN = "warn"  # admit it unchanged with a warning: its pods fail on those pools


CHECK_IDS = ("host-path", "host-pid", "host-ipc", "host-network", "privileged")
DEFAULT_DISABLED_CHECKS = frozenset({"privileged"})

# The config file's versioned identity, as Pod Security Admission's configuration has one. A file without
# apiVersion and kind (written before they existed) is read as this version.
CONFIG_API_VERSION = f"config.{PREFIX}/v1alpha1"
CONFIG_KIND = "ImmutableOSWebhookConfiguration"

# The keys of each section: the validator below and the chart's JSON Schema (config_schema.py) read these.
TOP_KEYS = ("apiVersion", "kind", "mode", "checks", "allowedHostPaths", "profiles", "immutableNodeSelectors",
            "steering", "exemptions", "onInternalError", "maxInventoryStalenessSeconds")  # fmt: skip
CHECK_KEYS = ("enabled", "severity")
HOST_PATH_KEYS = ("pathPrefix", "readOnly")
PROFILE_KEYS = ("enabled", "displayName", "labels", "labelPrefixes", "osImagePrefixes", "kernelSuffixes",
                "hostContract")  # fmt: skip
CONTRACT_TREE_KEYS = ("readOnly", "writable", "volatile", "noexec", "uncertain")
CONTRACT_KEYS = (*CONTRACT_TREE_KEYS, "codeIntegrity", "hostNamespaces", "privileged")
SELECTOR_KEYS = ("name", "matchLabels", "matchExpressions", "profile")
REQUIREMENT_KEYS = ("key", "operator", "values")
STEERING_KEYS = ("enabled", "strategy", "nodeSelector", "daemonSets")
EXEMPTION_KEYS = ("namespaces", "usernames", "groups", "runtimeClasses")
INTERNAL_ERROR_STANCES = ("allow", "deny")


@dataclass(frozen=True)
class CheckSettings:
    enabled: bool = True
    severity: Severity = Severity.ERROR


_CHECK_OFF = CheckSettings(enabled=False)


@dataclass(frozen=True)
class HostPathRule:
    """A hostPath is allowed when `path_prefix` matches it by whole segments (and mounts are read-only
    if `read_only`)."""

    path_prefix: str
    read_only: bool = False

    def covers(self, path: str) -> bool:
        prefix = _normalise_path(self.path_prefix)
        target = _normalise_path(path)
        if prefix == "/":
            return True
        return target == prefix or target.startswith(prefix + "/")


def _normalise_path(path: str) -> str:
    # Kubelet cleans hostPath paths; `/var/log/` and `/var//log` are the same directory.
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class SelectorRequirement:
    """One node-selector requirement, as in `matchExpressions` (In, NotIn, Exists, DoesNotExist, Gt, Lt)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.operator not in ("Exists", "DoesNotExist"):
            wire["values"] = list(self.values)
        return wire


SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


@dataclass(frozen=True)
class NodeLabelSelector:
    """A user's way to mark pools immutable: nodes matching every requirement are immutable. `profile`
    names the profile whose host contract applies to them (else only /usr is known read-only)."""

    name: str
    requirements: tuple[SelectorRequirement, ...]
    profile: str = ""


DEFAULT_SELECTORS = (NodeLabelSelector(PROFILE_LABEL, (SelectorRequirement(PROFILE_LABEL, "Exists"),)),)


class Memo:
    """Answers computed once and remembered, for a value that does not change (a config, an inventory).

    A key must name everything the answer depends on besides that value. Bounded: past MEMO_ENTRIES it
    starts over, so keys a pod chooses (its host paths, say) cannot grow it without end. Computing twice
    is harmless, so it takes no lock."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self._answers: dict[Hashable, Any] = {}
        self.entries = entries

    def get(self, key: Hashable, compute: Callable[[], T], size: int = 0) -> T:
        """`compute()`, remembered under `key`; `size`, the length of the text the key holds, keeps a
        key past MAX_MEMO_KEY_BYTES out (its answer is computed, not kept)."""
        if size > MAX_MEMO_KEY_BYTES:
            return compute()
        answers = self._answers
        if key in answers:
            value: T = answers[key]
            return value
        if len(answers) >= self.entries:
            answers.clear()
        value = answers[key] = compute()
        return value


@dataclass(frozen=True)
class Steering:
    enabled: bool = True
    strategy: SteeringStrategy = SteeringStrategy.AFFINITY
    node_selector: Mapping[str, str] = field(default_factory=dict)
    daemon_sets: DaemonSetPolicy = DaemonSetPolicy.STEER


@dataclass(frozen=True)
class Exemptions:
    namespaces: frozenset[str] = frozenset()
    usernames: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    runtime_classes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Config:
    mode: Mode = Mode.ENFORCE
    checks: Mapping[str, CheckSettings] = field(
        default_factory=lambda: {
            c: CheckSettings(enabled=c not in DEFAULT_DISABLED_CHECKS) for c in CHECK_IDS
        }
    )
    allowed_host_paths: tuple[HostPathRule, ...] = ()
    profiles: tuple[Profile, ...] = BUILTIN_PROFILES
    immutable_node_selectors: tuple[NodeLabelSelector, ...] = DEFAULT_SELECTORS
    steering: Steering = Steering()
    exemptions: Exemptions = Exemptions()
    # What /mutate and /validate answer when the handler itself fails (a bug, not a user error).
    allow_on_internal_error: bool = True
    # Past this age the live inventory is not trusted; decisions fall back to label evidence alone.
    max_inventory_staleness_seconds: float = 600.0
    # Answers that depend on this config and on no pod (see `Memo`); a new config starts empty. The memo
    # also stands for this config in the keys of other memos (it is hashed by identity).
    memo: Memo = field(default_factory=lambda: Memo(), init=False, compare=False, repr=False)
    # Judgements made without an inventory (by label evidence), apart as Inventory.judgements are.
    judgements: Memo = field(
        default_factory=lambda: Memo(JUDGEMENT_ENTRIES), init=False, compare=False, repr=False
    )

    def memoized(self, key: Hashable, compute: Callable[[], T], size: int = 0) -> T:
        return self.memo.get(key, compute, size)

    @property
    def enabled_profiles(self) -> tuple[Profile, ...]:
        return tuple(p for p in self.profiles if p.enabled)

    def check_settings(self, check_id: str) -> CheckSettings:
        return self.checks.get(check_id, _CHECK_OFF)

    def profile(self, name: str) -> Profile | None:
        """The enabled profile called `name` (the marker label's value names one), if any."""
        return next((p for p in self.enabled_profiles if p.name == name), None)

    def contract_of(self, profile_name: str) -> tuple[HostContract, str]:
        """The host contract and OS display name for a classification's profile name; an unknown name
        (a selector without a profile, a marker value we don't know) gets the generic contract."""
        profile = self.profile(profile_name)
        if profile is None:
            return GENERIC_CONTRACT, GENERIC_DISPLAY_NAME
        return profile.contract, profile.display_name

    def with_mode(self, mode: Mode) -> Config:
        return replace(self, mode=mode)

    def exempting(self, namespaces: Sequence[str]) -> Config:
        """This config with `namespaces` exempt too (e.g. `never_judged(own namespace)` for `serve`)."""
        exempt = self.exemptions.namespaces | frozenset(namespaces)
        return replace(self, exemptions=replace(self.exemptions, namespaces=exempt))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Config:
        """Validate a parsed config file; unknown keys are errors so a typo never goes unnoticed."""
        if data is None:
            return cls()
        reader = _Reader(data, "")
        reader.allow_only(*TOP_KEYS)
        _version(reader)
        default = cls()
        profiles = _profiles(reader.get("profiles", {}))
        return cls(
            mode=_enum(Mode, reader.get("mode", "enforce"), "mode"),
            checks=_checks(reader.get("checks", {})),
            allowed_host_paths=_host_paths(reader.get("allowedHostPaths", [])),
            profiles=profiles,
            immutable_node_selectors=_selectors(reader.get("immutableNodeSelectors", None), profiles),
            steering=_steering(reader.get("steering", {})),
            exemptions=_exemptions(reader.get("exemptions", {})),
            allow_on_internal_error=_enum_value(
                reader.get("onInternalError", "allow"), INTERNAL_ERROR_STANCES, "onInternalError"
            )
            == "allow",
            max_inventory_staleness_seconds=_positive_number(
                reader.get("maxInventoryStalenessSeconds", default.max_inventory_staleness_seconds),
                "maxInventoryStalenessSeconds",
            ),
        )


def _version(reader: _Reader) -> None:
    api_version = reader.get("apiVersion", CONFIG_API_VERSION)
    kind = reader.get("kind", CONFIG_KIND)
    if api_version != CONFIG_API_VERSION:
        raise ConfigError(f"unknown apiVersion {api_version!r}", field="apiVersion",
                          fix=f"this webhook reads apiVersion: {CONFIG_API_VERSION}")  # fmt: skip
    if kind != CONFIG_KIND:
        raise ConfigError(f"unknown kind {kind!r}", field="kind", fix=f"use kind: {CONFIG_KIND}")


class _Reader:
    """Reads one mapping of the config, naming `where` in every error."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"expected a mapping, got {_type_name(data)}",
                field=where or "<config>",
                fix="write key: value",
            )
        self.data: Mapping[str, Any] = data
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def allow_only(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                raise ConfigError(
                    "unknown key", field=self.path(str(key)), fix=f"known keys here: {', '.join(keys)}"
                )

    def get(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _enum_value(value: Any, allowed: Sequence[str], where: str) -> str:
    if value is False and "off" in allowed:
        return "off"  # YAML 1.1 reads an unquoted `off` as false
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"invalid value {value!r}", field=where, fix=f"use one of: {', '.join(allowed)}")
    return value


def _enum(kind: type[E], value: Any, where: str) -> E:
    allowed = [str(m.value) for m in kind]
    return kind(_enum_value(value, allowed, where))


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", field=where, fix="write true or false")
    return value


def _positive_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"expected a positive number, got {value!r}", field=where, fix="e.g. 600")
    return float(value)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a non-empty string, got {value!r}", field=where, fix="quote the value")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"expected a list of strings, got {_type_name(value)}", field=where, fix="- item")
    return tuple(_string(v, f"{where}[{i}]") for i, v in enumerate(value))


def _checks(value: Any) -> dict[str, CheckSettings]:
    reader = _Reader(value, "checks")
    reader.allow_only(*CHECK_IDS)
    result = {c: CheckSettings(enabled=c not in DEFAULT_DISABLED_CHECKS) for c in CHECK_IDS}
    for check_id, raw in reader.data.items():
        where = reader.path(check_id)
        if isinstance(raw, bool):  # shorthand: `host-network: false`
            result[check_id] = CheckSettings(enabled=raw)
            continue
        item = _Reader(raw, where)
        item.allow_only(*CHECK_KEYS)
        result[check_id] = CheckSettings(
            enabled=_bool(item.get("enabled", True), item.path("enabled")),
            severity=_enum(Severity, item.get("severity", "error"), item.path("severity")),
        )
    return result


def _host_paths(value: Any) -> tuple[HostPathRule, ...]:
    if not isinstance(value, list):
        raise ConfigError("expected a list", field="allowedHostPaths", fix="- {pathPrefix: /var/log}")
    rules = []
    for i, raw in enumerate(value):
        item = _Reader(raw, f"allowedHostPaths[{i}]")
        item.allow_only(*HOST_PATH_KEYS)
        prefix = _string(item.get("pathPrefix", None), item.path("pathPrefix"))
        if not prefix.startswith("/"):
            raise ConfigError(
                f"{prefix!r} is not absolute", field=item.path("pathPrefix"), fix="start it with /"
            )
        rules.append(HostPathRule(prefix, _bool(item.get("readOnly", False), item.path("readOnly"))))
    return tuple(rules)


def _string_lists(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    reader = _Reader(value, where)
    return {str(k): _strings(v, reader.path(str(k))) for k, v in reader.data.items()}


_CONTRACT_TREE_ACCESS = {
    "readOnly": Access.READ_ONLY,
    "writable": Access.WRITABLE,
    "volatile": Access.WRITABLE,
    "noexec": Access.WRITABLE,
    "uncertain": Access.UNCERTAIN,
}
_EFFECTS = tuple(e.value for e in Effect)


def _contract(value: Any, where: str, base: HostContract) -> HostContract:
    """`hostContract` overrides: each listed path takes the state of the list naming it (a path in both
    `volatile` and `noexec` is both); paths not listed keep the built-in state."""
    item = _Reader(value, where)
    item.allow_only(*CONTRACT_KEYS)
    listed: dict[str, dict[str, Any]] = {}
    for key, access in _CONTRACT_TREE_ACCESS.items():
        for i, path in enumerate(_strings(item.get(key, []), item.path(key))):
            if not path.startswith("/"):
                raise ConfigError(
                    f"{path!r} is not absolute", field=f"{item.path(key)}[{i}]", fix="start it with /"
                )
            entry = listed.setdefault(path, {"access": access, "volatile": False, "noexec": False})
            if entry["access"] is not access:
                raise ConfigError(
                    f"{path} is listed as both {entry['access'].value} and {access.value}",
                    field=item.path(key),
                    fix="list each path under one state (writable, volatile and noexec may combine)",
                )
            if key in ("volatile", "noexec"):
                entry[key] = True
    trees = [Tree(path, e["access"], volatile=e["volatile"], noexec=e["noexec"], note="configured")
             for path, e in listed.items()]  # fmt: skip
    contract = base.with_trees(trees)
    integrity = _enum(
        CodeIntegrity, item.get("codeIntegrity", base.code_integrity.value), item.path("codeIntegrity")
    )
    return replace(
        contract,
        code_integrity=integrity,
        # The built-in note describes the built-in setting; a configured one says so instead.
        code_integrity_note=base.code_integrity_note if integrity is base.code_integrity else "configured",
        host_namespaces=Effect(_enum_value(item.get("hostNamespaces", base.host_namespaces.value), _EFFECTS,
                                           item.path("hostNamespaces"))),
        privileged=Effect(_enum_value(item.get("privileged", base.privileged.value), _EFFECTS,
                                      item.path("privileged"))),
    )  # fmt: skip


def _extend(
    base: Mapping[str, tuple[str, ...]], more: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    merged = dict(base)
    for key, values in more.items():
        merged[key] = tuple(dict.fromkeys((*merged.get(key, ()), *values)))
    return merged


def _profiles(value: Any) -> tuple[Profile, ...]:
    """Built-in profiles switched or extended by name; new names define custom profiles."""
    reader = _Reader(value, "profiles")
    by_name = {p.name: p for p in BUILTIN_PROFILES}
    for name, raw in reader.data.items():
        where = reader.path(str(name))
        if isinstance(raw, bool):
            if name not in by_name:
                raise ConfigError(
                    "not a built-in profile", field=where, fix=f"built-ins: {', '.join(sorted(by_name))}"
                )
            by_name[name] = replace(by_name[name], enabled=raw)
            continue
        item = _Reader(raw, where)
        item.allow_only(*PROFILE_KEYS)
        base = by_name.get(name, Profile(str(name), str(name), GENERIC_CONTRACT))
        # Every list extends the built-in one (a value given twice counts once), as osImagePrefixes does.
        labels = _extend(base.labels, _string_lists(item.get("labels", {}), item.path("labels")))
        prefixes = _extend(
            base.label_prefixes, _string_lists(item.get("labelPrefixes", {}), item.path("labelPrefixes"))
        )
        profile = replace(
            base,
            enabled=_bool(item.get("enabled", True), item.path("enabled")),
            display_name=_string(item.get("displayName", base.display_name), item.path("displayName")),
            contract=_contract(item.get("hostContract", {}), item.path("hostContract"), base.contract),
            labels=labels,
            label_prefixes=prefixes,
            os_image_prefixes=base.os_image_prefixes
            + _strings(item.get("osImagePrefixes", []), item.path("osImagePrefixes")),
            kernel_suffixes=base.kernel_suffixes
            + _strings(item.get("kernelSuffixes", []), item.path("kernelSuffixes")),
        )
        if name not in by_name and not profile.has_evidence:
            raise ConfigError(
                "a custom profile needs evidence", field=where, fix="give labels, osImagePrefixes or both"
            )
        by_name[str(name)] = profile
    return tuple(by_name.values())


def parse_requirement(raw: Any, where: str) -> SelectorRequirement:
    item = _Reader(raw, where)
    item.allow_only(*REQUIREMENT_KEYS)
    key = _string(item.get("key", None), item.path("key"))
    operator = _enum_value(item.get("operator", None), SELECTOR_OPERATORS, item.path("operator"))
    values = _strings(item.get("values", []), item.path("values"))
    if operator in ("In", "NotIn") and not values:
        raise ConfigError(f"{operator} needs values", field=item.path("values"), fix="list at least one")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ConfigError(f"{operator} takes no values", field=item.path("values"), fix="remove values")
    if operator in ("Gt", "Lt") and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
        raise ConfigError(f"{operator} needs one integer", field=item.path("values"), fix='e.g. ["3"]')
    return SelectorRequirement(key, operator, values)


def _selectors(value: Any, profiles: tuple[Profile, ...]) -> tuple[NodeLabelSelector, ...]:
    if value is None:
        return DEFAULT_SELECTORS
    if not isinstance(value, list):
        raise ConfigError(
            "expected a list", field="immutableNodeSelectors", fix="- {matchLabels: {pool: flatcar}}"
        )
    selectors = []
    for i, raw in enumerate(value):
        where = f"immutableNodeSelectors[{i}]"
        item = _Reader(raw, where)
        item.allow_only(*SELECTOR_KEYS)
        requirements = [
            SelectorRequirement(k, "In", (v,))
            for k, v in (
                (str(k), _string(v, f"{where}.matchLabels.{k}"))
                for k, v in _Reader(item.get("matchLabels", {}), item.path("matchLabels")).data.items()
            )
        ]
        expressions = item.get("matchExpressions", [])
        if not isinstance(expressions, list):
            raise ConfigError("expected a list", field=item.path("matchExpressions"), fix="- {key: ..}")
        requirements += [
            parse_requirement(e, f"{where}.matchExpressions[{j}]") for j, e in enumerate(expressions)
        ]
        if not requirements:
            raise ConfigError(
                "an empty selector would mark every node immutable",
                field=where,
                fix="give matchLabels or matchExpressions",
            )
        default_name = ",".join(f"{r.key} {r.operator} {'|'.join(r.values)}".strip() for r in requirements)
        name = _string(item.get("name", default_name), item.path("name"))
        profile = item.get("profile", "")
        if profile != "":
            profile = _string(profile, item.path("profile"))
            if profile not in {p.name for p in profiles}:
                known = ", ".join(sorted(p.name for p in profiles))
                raise ConfigError(
                    f"unknown profile {profile!r}", field=item.path("profile"), fix=f"one of: {known}"
                )
        selectors.append(NodeLabelSelector(name, tuple(requirements), profile))
    return tuple(selectors)


def _steering(value: Any) -> Steering:
    reader = _Reader(value, "steering")
    reader.allow_only(*STEERING_KEYS)
    strategy = _enum(SteeringStrategy, reader.get("strategy", "affinity"), reader.path("strategy"))
    selector_reader = _Reader(reader.get("nodeSelector", {}), reader.path("nodeSelector"))
    node_selector = {
        str(k): _string(v, selector_reader.path(str(k))) for k, v in selector_reader.data.items()
    }
    if strategy is SteeringStrategy.NODE_SELECTOR and not node_selector:
        raise ConfigError(
            "strategy nodeSelector needs labels of a general pool",
            field="steering.nodeSelector",
            # A pool's own name: os-sku values can be shared by general and immutable pools on AKS.
            fix="e.g. {kubernetes.azure.com/agentpool: system}",
        )
    return Steering(
        _bool(reader.get("enabled", True), reader.path("enabled")),
        strategy,
        node_selector,
        _enum(DaemonSetPolicy, reader.get("daemonSets", "steer"), reader.path("daemonSets")),
    )


def _exemptions(value: Any) -> Exemptions:
    reader = _Reader(value, "exemptions")
    reader.allow_only(*EXEMPTION_KEYS)

    def names(key: str) -> frozenset[str]:
        return frozenset(_strings(reader.get(key, []), reader.path(key)))

    return Exemptions(names("namespaces"), names("usernames"), names("groups"), names("runtimeClasses"))
