"""Config validation: every key, and errors that name the key and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.core.config import (
    MAX_MEMO_KEY_BYTES,
    MEMO_ENTRIES,
    Config,
    DaemonSetPolicy,
    HostPathRule,
    Memo,
    Mode,
    Severity,
    SteeringStrategy,
)
from webhook.core.contracts import Access, CodeIntegrity, Effect
from webhook.errors import ConfigError


def test_defaults() -> None:
    config = Config.from_dict(None)
    assert config.mode is Mode.ENFORCE
    assert config.check_settings("host-path").enabled and not config.check_settings("privileged").enabled
    assert {p.name for p in config.enabled_profiles} >= {
        "azure-linux-osguard",
        "flatcar",
        "azure-container-linux",
    }
    assert config.steering.strategy is SteeringStrategy.AFFINITY and config.allow_on_internal_error


def test_every_key_is_read() -> None:
    config = Config.from_dict(
        {
            "mode": "warn",
            "checks": {"host-network": {"severity": "warning"}, "privileged": True},
            "allowedHostPaths": [{"pathPrefix": "/var/log", "readOnly": True}],
            "profiles": {"talos": False, "flatcar": {"osImagePrefixes": ["Flatcar Pro"]},
                         "myos": {"displayName": "My OS", "labels": {"os": ["my"]}}},
            "immutableNodeSelectors": [{"matchExpressions": [{"key": "locked", "operator": "Exists"}]}],
            "steering": {"enabled": True, "strategy": "nodeSelector", "nodeSelector": {"pool": "general"}},
            "exemptions": {"namespaces": ["kube-system"], "usernames": ["u"], "groups": ["g"], "runtimeClasses": ["kata"]},
            "onInternalError": "deny",
            "maxInventoryStalenessSeconds": 30,
        }
    )  # fmt: skip
    assert config.mode is Mode.WARN
    assert config.check_settings("host-network").severity is Severity.WARNING
    assert config.check_settings("privileged").enabled
    assert config.allowed_host_paths == (HostPathRule("/var/log", True),)
    profiles = {p.name: p for p in config.profiles}
    assert not profiles["talos"].enabled and "Flatcar Pro" in profiles["flatcar"].os_image_prefixes
    assert "Flatcar Container Linux" in profiles["flatcar"].os_image_prefixes
    assert profiles["myos"].labels == {"os": ("my",)} and profiles["myos"].display_name == "My OS"
    assert config.immutable_node_selectors[0].name == "locked Exists"
    assert config.steering.node_selector == {"pool": "general"}
    assert config.exemptions.runtime_classes == {"kata"}
    assert not config.allow_on_internal_error and config.max_inventory_staleness_seconds == 30


BAD = [
    ("unknown top key", {"mdoe": "warn"}, "mdoe", "known keys"),
    ("bad mode", {"mode": "strict"}, "mode", "enforce, warn, audit, off"),
    ("unknown check", {"checks": {"host-pids": True}}, "checks.host-pids", "host-pid"),
    ("bad severity", {"checks": {"host-pid": {"severity": "fatal"}}}, "checks.host-pid.severity", "error, warning"),
    ("relative path", {"allowedHostPaths": [{"pathPrefix": "var/log"}]}, "allowedHostPaths[0].pathPrefix", "start it with /"),
    ("readOnly not bool", {"allowedHostPaths": [{"pathPrefix": "/x", "readOnly": "yes"}]}, "allowedHostPaths[0].readOnly", "true or false"),
    ("unknown builtin toggle", {"profiles": {"windows": False}}, "profiles.windows", "built-ins"),
    ("custom without evidence", {"profiles": {"myos": {}}}, "profiles.myos", "give labels"),
    ("bad operator", {"immutableNodeSelectors": [{"matchExpressions": [{"key": "a", "operator": "Is"}]}]},
     "immutableNodeSelectors[0].matchExpressions[0].operator", "In, NotIn"),
    ("In without values", {"immutableNodeSelectors": [{"matchExpressions": [{"key": "a", "operator": "In"}]}]},
     "immutableNodeSelectors[0].matchExpressions[0].values", "at least one"),
    ("empty selector", {"immutableNodeSelectors": [{}]}, "immutableNodeSelectors[0]", "matchLabels"),
    ("nodeSelector strategy without labels", {"steering": {"strategy": "nodeSelector"}}, "steering.nodeSelector",
     "agentpool"),
    ("bad daemonSets policy", {"steering": {"daemonSets": "skip"}}, "steering.daemonSets", "steer, deny, warn"),
    ("selector naming an unknown profile", {"immutableNodeSelectors": [{"matchLabels": {"a": "b"}, "profile": "windows"}]},
     "immutableNodeSelectors[0].profile", "flatcar"),
    ("contract path not absolute", {"profiles": {"flatcar": {"hostContract": {"readOnly": ["usr"]}}}},
     "profiles.flatcar.hostContract.readOnly[0]", "start it with /"),
    ("contract path in two states", {"profiles": {"flatcar": {"hostContract": {"readOnly": ["/x"], "uncertain": ["/x"]}}}},
     "profiles.flatcar.hostContract.uncertain", "one state"),
    ("contract unknown key", {"profiles": {"flatcar": {"hostContract": {"readonly": ["/x"]}}}},
     "profiles.flatcar.hostContract.readonly", "readOnly"),
    ("contract bad effect", {"profiles": {"flatcar": {"hostContract": {"hostNamespaces": "fails"}}}},
     "profiles.flatcar.hostContract.hostNamespaces", "works, degrades, breaks"),
    ("contract bad code integrity", {"profiles": {"flatcar": {"hostContract": {"codeIntegrity": "on"}}}},
     "profiles.flatcar.hostContract.codeIntegrity", "off, audit, enforce"),
    ("exemptions not a list", {"exemptions": {"namespaces": "kube-system"}}, "exemptions.namespaces", "- item"),
    ("stance", {"onInternalError": "ignore"}, "onInternalError", "allow, deny"),
    ("staleness", {"maxInventoryStalenessSeconds": -1}, "maxInventoryStalenessSeconds", "600"),
    ("not a mapping", ["mode"], "<config>", "key: value"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "field", "fix"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_the_field_and_the_fix(data: Any, field: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_dict(data)
    assert err.value.field == field
    assert fix in str(err.value)


def test_host_contracts_are_overridden_and_extended_per_profile() -> None:
    config = Config.from_dict({"profiles": {
        "flatcar": {"hostContract": {"readOnly": ["/opt/vendor"], "volatile": ["/var/cache/x"], "noexec": ["/var/cache/x"],
                                     "codeIntegrity": "enforce", "hostNamespaces": "works"}},
        "myos": {"osImagePrefixes": ["MyOS "], "hostContract": {"readOnly": ["/"], "writable": ["/var"]}}}})  # fmt: skip
    flatcar = config.profile("flatcar")
    assert flatcar is not None
    contract = flatcar.contract
    assert contract.tree_of("/opt/vendor/bin").access is Access.READ_ONLY
    assert contract.tree_of("/opt/other").access is Access.WRITABLE
    cache = contract.tree_of("/var/cache/x/y")
    assert cache.volatile and cache.noexec
    assert contract.tree_of("/usr/bin").access is Access.READ_ONLY, "built-in rows are kept"
    assert contract.code_integrity is CodeIntegrity.ENFORCE and contract.host_namespaces is Effect.WORKS
    myos = config.profile("myos")
    assert myos is not None and myos.contract.tree_of("/etc").access is Access.READ_ONLY
    assert myos.contract.tree_of("/var/log").access is Access.WRITABLE


def test_daemon_set_policy_and_selector_profiles() -> None:
    config = Config.from_dict({"steering": {"daemonSets": "deny"},
                               "immutableNodeSelectors": [{"matchLabels": {"os": "fc"}, "profile": "flatcar"}]})  # fmt: skip
    assert config.steering.daemon_sets is DaemonSetPolicy.DENY
    assert config.immutable_node_selectors[0].profile == "flatcar"
    assert Config().steering.daemon_sets is DaemonSetPolicy.STEER
    contract, name = config.contract_of("flatcar")
    assert name == "Flatcar Container Linux" and contract.tree_of("/usr").access is Access.READ_ONLY
    assert config.contract_of("unknown")[1] == "an immutable OS"


def test_a_memo_stays_bounded_and_keeps_no_oversized_key() -> None:
    memo = Memo()
    calls: list[int] = []
    for n in range(MEMO_ENTRIES * 3):
        assert memo.get(n, lambda n=n: calls.append(n) or n * 2) == n * 2  # type: ignore[func-returns-value]
    assert len(calls) == MEMO_ENTRIES * 3 and len(memo._answers) <= MEMO_ENTRIES
    assert memo.get(1, lambda: -1) in (2, -1)  # remembered, or forgotten when the memo started over
    big = "x" * (MAX_MEMO_KEY_BYTES + 1)
    assert memo.get(big, lambda: 1, len(big)) == 1
    assert memo.get(big, lambda: 2, len(big)) == 2, "an oversized key is computed every time, never kept"
