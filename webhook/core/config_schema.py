"""The config file's JSON Schema, built from the same key lists and enums the validator in config.py reads.

The Helm chart embeds it under `config` in values.schema.json (hack/generate-chart.py writes it; a test
fails when the committed chart differs), so `helm install` rejects a typo with the schema path before the
webhook ever reads the file. The validator stays the authority: the schema is what a static tool can say.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from webhook.core.config import (
    CHECK_IDS,
    CHECK_KEYS,
    CONFIG_API_VERSION,
    CONFIG_KIND,
    CONTRACT_KEYS,
    CONTRACT_TREE_KEYS,
    EXEMPTION_KEYS,
    HOST_PATH_KEYS,
    INTERNAL_ERROR_STANCES,
    PROFILE_KEYS,
    REQUIREMENT_KEYS,
    SELECTOR_KEYS,
    SELECTOR_OPERATORS,
    STEERING_KEYS,
    TOP_KEYS,
    DaemonSetPolicy,
    Mode,
    Severity,
    SteeringStrategy,
)
from webhook.core.contracts import CodeIntegrity, Effect
from webhook.core.profiles import BUILTIN_PROFILES

Schema = dict[str, Any]
STRING: Schema = {"type": "string", "minLength": 1}
STRINGS: Schema = {"type": "array", "items": STRING}
LABELS: Schema = {"type": "object", "additionalProperties": STRING}
STRING_LISTS: Schema = {"type": "object", "additionalProperties": STRINGS}
ABSOLUTE_PATHS: Schema = {"type": "array", "items": {"type": "string", "pattern": "^/"}}


def _enum(kind: type[enum.Enum] | Iterable[str]) -> Schema:
    values = [m.value for m in kind] if isinstance(kind, type) else list(kind)
    return {"enum": values}


def _object(keys: Iterable[str], properties: Schema, **extra: Any) -> Schema:
    keys = tuple(keys)
    missing = set(keys) - set(properties)
    if missing:  # the validator reads a key the schema does not describe
        raise AssertionError(f"schema lacks {sorted(missing)}")
    chosen = {k: properties[k] for k in keys}
    return {"type": "object", "additionalProperties": False, "properties": chosen} | extra


def _profile(*, builtin: bool) -> Schema:
    contract = _object(CONTRACT_KEYS, {
        **{k: ABSOLUTE_PATHS for k in CONTRACT_TREE_KEYS},
        "codeIntegrity": _enum(CodeIntegrity), "hostNamespaces": _enum(Effect), "privileged": _enum(Effect),
    })  # fmt: skip
    profile = _object(PROFILE_KEYS, {
        "enabled": {"type": "boolean"}, "displayName": STRING, "labels": STRING_LISTS,
        "labelPrefixes": STRING_LISTS, "osImagePrefixes": STRINGS, "kernelSuffixes": STRINGS,
        "hostContract": contract,
    })  # fmt: skip
    if builtin:
        return profile | {"type": ["boolean", "object"], "description": "true/false, or overrides"}
    return profile | {"anyOf": [{"required": [k]} for k in ("labels", "labelPrefixes", "osImagePrefixes",
                                                             "kernelSuffixes")]}  # fmt: skip


def config_schema() -> Schema:
    """The JSON Schema of a config file (what the chart accepts under `config`)."""
    check = _object(CHECK_KEYS, {"enabled": {"type": "boolean"}, "severity": _enum(Severity)})
    check |= {"type": ["boolean", "object"], "description": "true/false, or {enabled, severity}"}
    requirement = _object(REQUIREMENT_KEYS, {"key": STRING, "operator": _enum(SELECTOR_OPERATORS),
                                             "values": {"type": "array", "items": {"type": "string"}}},
                          required=["key", "operator"])  # fmt: skip
    # A selector may name a custom profile too: the validator checks that the name exists.
    selector = _object(SELECTOR_KEYS, {
        "name": STRING, "matchLabels": LABELS, "matchExpressions": {"type": "array", "items": requirement},
        "profile": STRING | {"description": "the profile whose host contract applies"},
    }, anyOf=[{"required": ["matchLabels"]}, {"required": ["matchExpressions"]}])  # fmt: skip
    return _object(TOP_KEYS, {
        "apiVersion": {"const": CONFIG_API_VERSION},
        "kind": {"const": CONFIG_KIND},
        "mode": _enum(Mode),
        "checks": _object(CHECK_IDS, dict.fromkeys(CHECK_IDS, check)),
        "allowedHostPaths": {"type": "array", "items": _object(HOST_PATH_KEYS, {
            "pathPrefix": {"type": "string", "pattern": "^/"}, "readOnly": {"type": "boolean"}},
            required=["pathPrefix"])},
        "profiles": {"type": "object", "additionalProperties": _profile(builtin=False),
                     "properties": {p.name: _profile(builtin=True) for p in BUILTIN_PROFILES}},
        "immutableNodeSelectors": {"type": "array", "items": selector},
        "steering": _object(STEERING_KEYS, {
            "enabled": {"type": "boolean"}, "strategy": _enum(SteeringStrategy), "nodeSelector": LABELS,
            "daemonSets": _enum(DaemonSetPolicy)}),
        "exemptions": _object(EXEMPTION_KEYS, dict.fromkeys(EXEMPTION_KEYS, STRINGS)),
        "onInternalError": _enum(INTERNAL_ERROR_STANCES),
        "maxInventoryStalenessSeconds": {"type": "number", "exclusiveMinimum": 0},
    }, description="docs/configuration.md")  # fmt: skip
