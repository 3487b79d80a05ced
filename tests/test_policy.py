"""Host-access checks: a corpus of pass/fail pods, each the minimal pod with one tweak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import webhook.core.policy
from tests.builders import host_path, minimal_pod, set_field, tweak
from webhook.core.config import CHECK_IDS, Config, HostPathRule
from webhook.core.policy import REGISTRY, consequence, evaluate
from webhook.core.profiles import BUILTIN_PROFILES, Profile
from webhook.core.workloads import pod_spec_view
from webhook.errors import ManifestError


def findings(pod: dict[str, Any], config: Config | None = None) -> list[tuple[str, str]]:
    return [(f.check, f.field) for f in evaluate(pod_spec_view(pod), config or Config())]


def test_registry_ids_are_unique_and_match_the_config_ids() -> None:
    assert sorted(REGISTRY) == sorted(CHECK_IDS)
    assert len({c.id for c in REGISTRY.values()}) == len(REGISTRY)


def test_every_check_module_is_registered() -> None:
    package = Path(webhook.core.policy.__file__).parent
    modules = {p.stem for p in package.glob("*.py")} - {"__init__", "base"}
    registered = {check.evaluate.__module__.rsplit(".", 1)[-1] for check in REGISTRY.values()}
    assert modules == registered


def test_every_check_has_a_spec_docstring_a_consequence_and_a_fix() -> None:
    for check in REGISTRY.values():
        module = __import__(check.evaluate.__module__, fromlist=["_"])
        assert module.__doc__ and "Allowed values" in module.__doc__ and "Consequence" in module.__doc__
        assert check.fix and check.effect.__module__ == check.evaluate.__module__


PASS = [
    ("minimal", []),
    ("hostPID false", [set_field("hostPID", False)]),
    ("hostNetwork null", [set_field("hostNetwork", None)]),
    ("emptyDir volume", [set_field("volumes", [{"name": "x", "emptyDir": {}}])]),
    (
        "privileged is off by default",
        [lambda s: s["containers"][0].update(securityContext={"privileged": True})],
    ),
]
FAIL = [
    ("hostPath", [host_path("/var/lib/app")], [("host-path", "spec.volumes[0].hostPath.path")]),
    ("hostPath read-only", [host_path("/etc", read_only=True)], [("host-path", "spec.volumes[0].hostPath.path")]),
    ("hostPath in initContainer", [host_path("/opt", container="initContainers")],
     [("host-path", "spec.volumes[0].hostPath.path")]),
    ("hostPath not mounted", [set_field("volumes", [{"name": "h", "hostPath": {"path": "/"}}])],
     [("host-path", "spec.volumes[0].hostPath.path")]),
    ("hostPID", [set_field("hostPID", True)], [("host-pid", "spec.hostPID")]),
    ("hostIPC", [set_field("hostIPC", True)], [("host-ipc", "spec.hostIPC")]),
    ("hostNetwork", [set_field("hostNetwork", True)], [("host-network", "spec.hostNetwork")]),
    ("all, sorted by check", [set_field("hostNetwork", True), set_field("hostPID", True), host_path("/x")],
     [("host-network", "spec.hostNetwork"), ("host-path", "spec.volumes[0].hostPath.path"),
      ("host-pid", "spec.hostPID")]),
]  # fmt: skip


@pytest.mark.parametrize(("tweaks",), [(t,) for _, t in PASS], ids=[n for n, _ in PASS])
def test_pods_that_pass(tweaks: list[Any]) -> None:
    assert findings(tweak(*tweaks)) == []


@pytest.mark.parametrize(("tweaks", "expected"), [(t, e) for _, t, e in FAIL], ids=[n for n, _, _ in FAIL])
def test_pods_that_fail(tweaks: list[Any], expected: list[tuple[str, str]]) -> None:
    assert findings(tweak(*tweaks)) == expected


def test_host_path_detail_names_path_writability_and_propagation() -> None:
    pod = tweak(host_path("/var/lib/kubelet", propagation="Bidirectional", name="kubelet"))
    (finding,) = evaluate(pod_spec_view(pod), Config())
    assert finding.detail == (
        'volume "kubelet" mounts /var/lib/kubelet (writable in app; mountPropagation Bidirectional in app)'
    )


def test_host_path_mounted_by_ephemeral_container_counts_as_writable() -> None:
    pod = tweak(host_path("/data", read_only=True))
    pod["spec"]["ephemeralContainers"] = [
        {"name": "debugger", "image": "busybox", "volumeMounts": [{"name": "host", "mountPath": "/d"}]}
    ]
    (finding,) = evaluate(pod_spec_view(pod), Config())
    assert "writable in debugger" in finding.detail


def test_each_volume_gets_exactly_its_own_mounts_among_thousands() -> None:
    """3,000 hostPath volumes, each mounted by a different one of 40 containers, some read-only: each
    finding names the container that writes it and no other (the mounts are read once per pod, by
    volume name, not once per volume: that was volumes x mounts)."""
    volumes = [{"name": f"v{i}", "hostPath": {"path": f"/var/lib/agent/{i}"}} for i in range(3000)]
    containers = [{"name": f"c{c}", "image": "agent:1", "volumeMounts": [
        {"name": f"v{i}", "mountPath": f"/m/{i}", "readOnly": i % 3 == 0} for i in range(c, 3000, 40)]}
        for c in range(40)]  # fmt: skip
    pod = tweak(set_field("volumes", volumes), set_field("containers", containers))
    details = sorted(f.detail for f in evaluate(pod_spec_view(pod), Config()))
    modes = ["read-only" if i % 3 == 0 else f"writable in c{i % 40}" for i in range(3000)]
    assert details == sorted(f'volume "v{i}" mounts /var/lib/agent/{i} ({m})' for i, m in enumerate(modes))


ALLOWED_PATHS = [
    ("/var/log", False, "/var/log", False, True),
    ("/var/log", False, "/var/log/pods", False, True),
    ("/var/log", False, "/var/logs", False, False),
    ("/var/log/", False, "/var/log//pods/", False, True),
    ("/", False, "/anything", False, True),
    ("/var/log", True, "/var/log/pods", True, True),
    ("/var/log", True, "/var/log/pods", False, False),
    ("/var/log", False, "/var", False, False),
]


@pytest.mark.parametrize(
    ("prefix", "rule_read_only", "path", "mount_read_only", "allowed"),
    ALLOWED_PATHS,
    ids=[f"{p}{'(ro)' if r else ''} vs {q}{'(ro)' if m else ''}" for p, r, q, m, _ in ALLOWED_PATHS],
)
def test_allowed_host_paths_match_whole_segments_and_read_only(
    prefix: str, rule_read_only: bool, path: str, mount_read_only: bool, allowed: bool
) -> None:
    config = Config(allowed_host_paths=(HostPathRule(prefix, rule_read_only),))
    result = findings(tweak(host_path(path, read_only=mount_read_only)), config)
    assert (result == []) is allowed


def test_read_only_rule_needs_every_mount_read_only() -> None:
    pod = tweak(host_path("/var/log", read_only=True))
    pod["spec"]["initContainers"] = [
        {"name": "init", "image": "x", "volumeMounts": [{"name": "host", "mountPath": "/l"}]}
    ]
    config = Config(allowed_host_paths=(HostPathRule("/var/log", True),))
    assert findings(pod, config) == [("host-path", "spec.volumes[0].hostPath.path")]


def test_privileged_when_enabled_covers_every_container_list() -> None:
    config = Config.from_dict({"checks": {"privileged": {"enabled": True}}})
    pod = minimal_pod()
    for field in ("containers", "initContainers", "ephemeralContainers"):
        pod["spec"][field] = [{"name": field, "image": "x", "securityContext": {"privileged": True}}]
    assert findings(pod, config) == [
        ("privileged", "spec.containers[0].securityContext.privileged"),
        ("privileged", "spec.ephemeralContainers[0].securityContext.privileged"),
        ("privileged", "spec.initContainers[0].securityContext.privileged"),
    ]


def test_disabled_check_reports_nothing() -> None:
    config = Config.from_dict({"checks": {"host-pid": False}})
    assert findings(tweak(set_field("hostPID", True)), config) == []


@pytest.mark.parametrize(
    ("spec_change", "field"),
    [
        (set_field("hostPID", "yes"), "spec.hostPID"),
        (set_field("volumes", "nope"), "spec.volumes"),
        (set_field("volumes", [{"name": "h", "hostPath": {}}]), "spec.volumes[0].hostPath.path"),
        (
            lambda s: s.update(
                containers=[{"name": "a", "volumeMounts": 3}],
                volumes=[{"name": "h", "hostPath": {"path": "/"}}],
            ),
            "spec.containers[0].volumeMounts",
        ),
    ],
    ids=["hostPID string", "volumes not a list", "hostPath without path", "volumeMounts not a list"],
)
def test_malformed_specs_raise_errors_naming_the_field(spec_change: Any, field: str) -> None:
    with pytest.raises(ManifestError) as err:
        evaluate(pod_spec_view(tweak(spec_change)), Config())
    assert err.value.field == field


ACL = next(p for p in BUILTIN_PROFILES if p.name == "azure-container-linux")
BOTTLEROCKET = next(p for p in BUILTIN_PROFILES if p.name == "bottlerocket")


def consequences(pod: dict[str, Any], profile: Profile = ACL, config: Config | None = None) -> list[str]:
    config = config or Config()
    return [consequence(f, profile.contract, profile.display_name, config).effect.value
            for f in evaluate(pod_spec_view(pod), config)]  # fmt: skip


CONSEQUENCES = [
    ("read-only mount of /usr", [host_path("/usr", read_only=True)], ["works"]),
    ("writable /usr", [host_path("/usr")], ["breaks"]),
    ("writable /lib/modules (merged /usr)", [host_path("/lib/modules")], ["breaks"]),
    ("writable / covers /usr", [host_path("/")], ["breaks"]),
    ("writable / with a subPath under /var", [lambda s: s.update(volumes=[{"name": "r", "hostPath": {"path": "/"}}],
      containers=[{"name": "c", "volumeMounts": [{"name": "r", "mountPath": "/d", "subPath": "var/lib/agent"}]}])],
     ["works"]),
    ("read-only / and a writable subPath of /usr", [lambda s: s.update(volumes=[{"name": "r", "hostPath": {"path": "/"}}],
      containers=[{"name": "a", "volumeMounts": [{"name": "r", "mountPath": "/h", "readOnly": True}]},
                  {"name": "b", "volumeMounts": [{"name": "r", "mountPath": "/u", "subPath": "usr/share/x"}]}])],
     ["breaks"]),
    ("DirectoryOrCreate under /usr, mounted read-only", [lambda s: s.update(
        volumes=[{"name": "p", "hostPath": {"path": "/usr/libexec/kubernetes/kubelet-plugins", "type": "DirectoryOrCreate"}}],
        containers=[{"name": "c", "volumeMounts": [{"name": "p", "mountPath": "/p", "readOnly": True}]}])], ["breaks"]),
    ("FileOrCreate /run/xtables.lock", [lambda s: s.update(
        volumes=[{"name": "x", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}])], ["works"]),
    ("writable /opt/cni/bin", [host_path("/opt/cni/bin")], ["works"]),
    ("writable /etc/cni/net.d", [host_path("/etc/cni/net.d")], ["works"]),
    ("hostNetwork", [set_field("hostNetwork", True)], ["degrades"]),
    ("hostPID and hostIPC", [set_field("hostPID", True), set_field("hostIPC", True)], ["degrades", "degrades"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tweaks", "expected"), [(t, e) for _, t, e in CONSEQUENCES], ids=[n for n, _, _ in CONSEQUENCES]
)
def test_consequence_on_azure_container_linux(tweaks: list[Any], expected: list[str]) -> None:
    assert consequences(tweak(*tweaks)) == expected


def test_consequences_differ_per_os() -> None:
    etc = tweak(host_path("/etc/myagent"))
    assert consequences(etc, ACL) == ["works"] and consequences(etc, BOTTLEROCKET) == ["degrades"]
    assert consequences(tweak(host_path("/opt/bin")), BOTTLEROCKET) == ["works"]


def test_severity_warning_caps_at_degrades_and_contracts_can_say_namespaces_work() -> None:
    capped = Config.from_dict({"checks": {"host-path": {"severity": "warning"}}})
    assert consequences(tweak(host_path("/usr")), config=capped) == ["degrades"]
    relaxed = Config.from_dict(
        {"profiles": {"azure-container-linux": {"hostContract": {"hostNamespaces": "works"}}}}
    )
    profile = relaxed.profile("azure-container-linux")
    assert profile is not None
    assert consequences(tweak(set_field("hostNetwork", True)), profile, relaxed) == ["works"]


def test_host_path_accesses_carry_the_effective_paths() -> None:
    pod = tweak(lambda s: s.update(volumes=[{"name": "r", "hostPath": {"path": "/", "type": "Directory"}}],
                containers=[{"name": "a", "volumeMounts": [{"name": "r", "mountPath": "/h", "readOnly": True}]},
                            {"name": "b", "volumeMounts": [{"name": "r", "mountPath": "/l", "subPath": "var/log"}]}]))  # fmt: skip
    (finding,) = evaluate(pod_spec_view(pod), Config())
    assert [(a.path, a.writes, a.creates) for a in finding.paths] == [
        ("/", False, False),
        ("/var/log", True, False),
    ]
    assert "subPath var/log" in finding.detail
