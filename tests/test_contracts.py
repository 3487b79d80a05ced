"""Host contracts: every row of the table per OS, and what a read, a write, a create or dropped binaries
do under each (IMMUTABLE_OS_FACTS.md section 1; docs/profiles.md)."""

from __future__ import annotations

import pytest

from webhook.core.contracts import (
    Access,
    CodeIntegrity,
    Effect,
    HostContract,
    PathAccess,
    Tree,
    effect_of_path,
    installs_binaries,
    normalise,
)
from webhook.core.profiles import BUILTIN_PROFILES, GENERIC_CONTRACT

PROFILES = {p.name: p for p in BUILTIN_PROFILES}
ALL = tuple(PROFILES)
W, C, R = "write", "create", "read"


def effect(profile: str, path: str, how: str = W) -> Effect:
    p = PROFILES[profile]
    access = PathAccess(normalise(path), writes=how == W, creates=how == C)
    return effect_of_path(access, p.contract, p.display_name)[0]


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/bin", "/usr/bin"), ("/lib/modules", "/usr/lib/modules"), ("/lib64/", "/usr/lib64"),
     ("//var/./log/", "/var/log"), ("/", "/"), ("/library", "/library"), ("/sbin/x", "/usr/sbin/x")],
)  # fmt: skip
def test_paths_are_read_as_the_kubelet_resolves_them(path: str, expected: str) -> None:
    assert normalise(path) == expected


@pytest.mark.parametrize("profile", ALL)
@pytest.mark.parametrize("path", ["/", "/usr", "/usr/local/bin", "/etc", "/opt/cni/bin", "/var/lib/x", "/lib/modules",
                                  "/home", "/boot", "/proc", "/sys/fs/bpf", "/dev"])  # fmt: skip
def test_reading_works_everywhere(profile: str, path: str) -> None:
    assert effect(profile, path, R) is Effect.WORKS


@pytest.mark.parametrize("profile", ALL)
@pytest.mark.parametrize("path", ["/", "/usr", "/usr/local", "/usr/local/bin", "/bin", "/sbin", "/lib", "/lib/modules",
                                  "/lib64", "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/x~y"])  # fmt: skip
def test_writing_usr_or_a_tree_holding_it_breaks_everywhere_but_fcos_usr_local(
    profile: str, path: str
) -> None:
    expected = Effect.BREAKS
    if profile == "fedora-coreos" and normalise(path).startswith("/usr/local"):
        expected = Effect.WORKS  # ostree links /usr/local to /var/usrlocal
    assert effect(profile, path) is expected


@pytest.mark.parametrize("profile", ALL)
@pytest.mark.parametrize("path", ["/proc", "/sys", "/sys/fs/bpf", "/dev", "/run", "/run/xtables.lock", "/var/run/calico",
                                  "/var/log", "/var/log/pods", "/var/lib/kubelet", "/var/lib/kubelet/plugins"])  # fmt: skip
def test_the_kubelets_and_kernels_trees_work_everywhere(profile: str, path: str) -> None:
    assert effect(profile, path) is Effect.WORKS
    assert effect(profile, path, C) is Effect.WORKS


# One row per OS and tree: what a writable mount does (IMMUTABLE_OS_FACTS.md section 1).
TABLE = {
    #          flatcar  acl      osguard  bottlerocket talos  fcos     cos
    "/etc": ("works", "works", "works", "degrades", "breaks", "works", "degrades"),
    "/etc/kubernetes": ("works", "works", "works", "degrades", "works", "works", "degrades"),
    "/etc/cni/net.d": ("works", "works", "works", "degrades", "works", "works", "degrades"),
    "/opt": ("works", "works", "works", "works", "degrades", "works", "breaks"),
    "/opt/cni/bin": ("works", "works", "degrades", "works", "degrades", "works", "breaks"),
    "/var/lib/calico": ("works", "works", "works", "works", "degrades", "works", "works"),
    "/var/lib/foo/bin": ("works", "works", "degrades", "works", "degrades", "works", "breaks"),
    "/var/tmp": ("works", "works", "degrades", "works", "degrades", "works", "works"),
    "/home/kubernetes/bin": ("works", "degrades", "degrades", "breaks", "breaks", "works", "works"),
    "/root": ("works", "degrades", "degrades", "breaks", "breaks", "works", "breaks"),
    "/tmp": ("works", "works", "works", "works", "works", "works", "degrades"),
}
ORDER = ("flatcar", "azure-container-linux", "azure-linux-osguard", "bottlerocket", "talos", "fedora-coreos",
         "container-optimized-os")  # fmt: skip


@pytest.mark.parametrize(("path", "row"), TABLE.items(), ids=list(TABLE))
def test_contract_table_per_os(path: str, row: tuple[str, ...]) -> None:
    assert set(ORDER) == set(ALL)
    assert {os: effect(os, path).value for os in ORDER} == dict(zip(ORDER, row, strict=True))


def test_a_create_only_mount_breaks_only_on_read_only_trees_and_degrades_where_unknown() -> None:
    # type DirectoryOrCreate with a readOnly mount: the kubelet creates the path, nothing else writes.
    assert effect("azure-container-linux", "/usr/share/x", C) is Effect.BREAKS
    assert effect("bottlerocket", "/etc/foo", C) is Effect.WORKS  # volatile: created again at each start
    assert effect("azure-container-linux", "/boot/x", C) is Effect.DEGRADES  # unknown tree
    assert effect("flatcar", "/var/lib/x", C) is Effect.WORKS


def test_binaries_dropped_where_the_os_will_not_run_them() -> None:
    assert installs_binaries("/opt/cni/bin") and installs_binaries("/opt/cni")
    assert installs_binaries("/usr/libexec/kubernetes/kubelet-plugins/volume/exec")
    assert installs_binaries("/opt/libexec/kubernetes/kubelet-plugins/volume/exec/nodeagent~uds")
    assert installs_binaries("/etc/kubernetes/volumeplugins") and installs_binaries("/opt/CrowdStrike")
    assert not installs_binaries("/var/lib/binder") and not installs_binaries("/etc/cni/net.d")
    assert not installs_binaries("/opt"), "the tree itself, as a data mount, is not one package"
    enforcing = HostContract((Tree("/usr", Access.READ_ONLY), Tree("/opt", Access.WRITABLE), Tree("/var", Access.WRITABLE)),
                             code_integrity=CodeIntegrity.ENFORCE)  # fmt: skip
    result = effect_of_path(PathAccess("/opt/bin", writes=True), enforcing, "LockedOS")
    assert result[0] is Effect.BREAKS and "refuses binaries from outside /usr" in result[1]
    assert effect_of_path(PathAccess("/var/lib/data", writes=True), enforcing, "LockedOS")[0] is Effect.WORKS


def test_reasons_name_the_tree_its_state_and_the_os() -> None:
    acl = PROFILES["azure-container-linux"]
    _, why = effect_of_path(PathAccess("/usr/local/bin", writes=True), acl.contract, acl.display_name)
    assert why == "writes /usr/local/bin; /usr is read-only (dm-verity) on Azure Container Linux"
    _, why = effect_of_path(PathAccess("/", writes=True), acl.contract, acl.display_name)
    assert why == "mounts / writable, which holds /usr, read-only (dm-verity) on Azure Container Linux"
    br = PROFILES["bottlerocket"]
    _, why = effect_of_path(PathAccess("/etc/ssl", writes=True), br.contract, br.display_name)
    assert "/etc is volatile (tmpfs, rebuilt at boot) on Bottlerocket" in why


def test_generic_contract_for_unknown_immutable_nodes() -> None:
    assert effect_of_path(PathAccess("/usr/bin", writes=True), GENERIC_CONTRACT, "x")[0] is Effect.BREAKS
    assert effect_of_path(PathAccess("/var/lib/x", writes=True), GENERIC_CONTRACT, "x")[0] is Effect.DEGRADES
    assert effect_of_path(PathAccess("/var/log", writes=True), GENERIC_CONTRACT, "x")[0] is Effect.WORKS


@pytest.mark.parametrize("profile", ["azure-container-linux", "flatcar", "talos"])
def test_a_path_deeper_than_any_tree_is_decided_by_its_deepest_listed_prefix(profile: str) -> None:
    """The fuzzer's 100,000-segment host path: judged by the tree it lies in (the lookup probes only
    prefixes as deep as the deepest listed tree), exactly as a short path in the same tree."""
    deep = "/a" * 100_000
    contract = PROFILES[profile].contract
    assert contract.tree_of(normalise("/usr/local" + deep)) == contract.tree_of("/usr/local/a")
    assert contract.tree_of(normalise("/var/lib/kubelet" + deep)).path == "/var/lib/kubelet"
    assert effect(profile, "/usr/local/bin" + deep) is Effect.BREAKS
    assert effect(profile, "/var/log" + deep) is effect(profile, "/var/log/a")
    assert contract.tree_of("/") == contract.tree_of(normalise("//"))
