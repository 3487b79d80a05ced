"""Host contracts: what an immutable OS does with each host tree a pod may mount, as data.

A contract lists trees (path prefixes) as read-only, writable, or uncertain, a writable tree possibly
volatile (lost at reboot) or noexec; the longest matching prefix decides. `/bin`, `/sbin`, `/lib`,
`/lib64` are read as `/usr/...` (merged /usr on every OS here). The trees the kubelet and kernel manage
(`/proc`, `/sys`, `/dev`, `/run`, `/var/run`, `/var/log`, `/var/lib/kubelet`, `/tmp`) are writable under
every contract unless it says otherwise. `effect_of_path` turns one host-path access into an `Effect`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache


class Effect(enum.Enum):
    """What one host access does on one OS, from harmless to fatal; `max()` over `rank` is the worst."""

    WORKS = "works"
    DEGRADES = "degrades"
    BREAKS = "breaks"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Effect.WORKS: 0, Effect.DEGRADES: 1, Effect.BREAKS: 2}


def worst(effects: Iterable[Effect]) -> Effect:
    return max(effects, key=lambda e: e.rank, default=Effect.WORKS)


class Access(enum.Enum):
    READ_ONLY = "readOnly"
    WRITABLE = "writable"
    UNCERTAIN = "uncertain"


class CodeIntegrity(enum.Enum):
    """Whether the OS refuses to run host binaries from outside its verified tree (`/usr`)."""

    OFF = "off"
    AUDIT = "audit"  # logs them (e.g. IPE in audit mode): degrades
    ENFORCE = "enforce"  # refuses them: breaks


@dataclass(frozen=True)
class Tree:
    path: str
    access: Access
    volatile: bool = False  # writable, but rebuilt at boot (tmpfs) or wiped at upgrade
    noexec: bool = False  # writable, but the host will not execute files from it
    note: str = ""  # why, in a few words: "dm-verity", "tmpfs, rebuilt at boot"

    def describe(self) -> str:
        if self.access is Access.READ_ONLY:
            kind = "read-only"
        elif self.access is Access.UNCERTAIN:
            kind = "of unknown writability"
        else:
            kind = "volatile" if self.volatile else "noexec" if self.noexec else "writable"
        return f"{kind} ({self.note})" if self.note else kind


# The kubelet's and the kernel's own trees: fine on every OS (a contract may still say otherwise).
RUNTIME_TREES: tuple[Tree, ...] = tuple(
    Tree(p, Access.WRITABLE, note="managed by the kernel or kubelet")
    for p in ("/proc", "/sys", "/dev", "/run", "/var/run", "/var/log", "/var/lib/kubelet", "/tmp")
)
MERGED_USR = {p: "/usr" + p for p in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")}
# A writable mount here drops files the host executes: bin/sbin/libexec trees, CNI plugins, FlexVolume
# drivers (/usr/libexec/kubernetes/kubelet-plugins/volume/exec, AKS's /etc/kubernetes/volumeplugins), and
# anything under /opt, where add-on software is installed (FHS): security sensors, GPU toolkits.
BINARY_SEGMENTS = frozenset({"bin", "sbin", "libexec", "volumeplugins"})
BINARY_PATHS = ("/kubelet-plugins/volume/exec",)
SOFTWARE_TREES = ("/opt",)


def normalise(path: str) -> str:
    """A host path as the kubelet resolves it: segments cleaned, merged-/usr aliases followed."""
    # Pods of one workload mount the same paths, review after review; a path past PATH_MAX is not kept.
    return _normalise_kept(path) if len(path) <= 4096 else _normalise(path)


@lru_cache(maxsize=1024)
def _normalise_kept(path: str) -> str:
    return _normalise(path)


def _normalise(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    clean = "/" + "/".join(parts)
    for alias, target in MERGED_USR.items():
        if clean == alias or clean.startswith(alias + "/"):
            return target + clean[len(alias) :]
    return clean


def within(path: str, tree: str) -> bool:
    return tree == "/" or path == tree or path.startswith(tree + "/")


def installs_binaries(path: str) -> bool:
    segments = path.split("/")
    return (
        bool(BINARY_SEGMENTS.intersection(segments))
        or any((p + "/") in path + "/" for p in BINARY_PATHS)
        or any(path.startswith(tree + "/") for tree in SOFTWARE_TREES)
    )


@dataclass(frozen=True)
class HostContract:
    trees: tuple[Tree, ...]
    code_integrity: CodeIntegrity = CodeIntegrity.OFF
    code_integrity_note: str = ""
    verified: str = "/usr"
    host_namespaces: Effect = Effect.DEGRADES
    privileged: Effect = Effect.DEGRADES
    _index: Mapping[str, Tree] = field(default_factory=dict, compare=False, repr=False)
    _depth: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        index = {t.path: t for t in RUNTIME_TREES}
        index.update({normalise(t.path): t for t in self.trees})
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_depth", max(p.count("/") for p in index))

    def tree_of(self, path: str) -> Tree:
        """The tree that decides for `path` (already normalised): its longest listed prefix."""
        # Only prefixes as deep as the deepest listed tree can match: a path of 100,000 segments costs
        # one pass over it, not one per segment.
        parts = path.split("/", self._depth + 1)[1 : self._depth + 1]
        for depth in range(len(parts), 0, -1):
            tree = self._index.get("/" + "/".join(parts[:depth]))
            if tree is not None:
                return tree
        return self._index.get("/") or Tree("/", Access.UNCERTAIN, note="not in this OS's host contract")

    def read_only_below(self, path: str) -> tuple[Tree, ...]:
        """Read-only trees strictly inside `path`: a writable mount of `path` can write into them."""
        return tuple(
            t
            for p, t in sorted(self._index.items())
            if t.access is Access.READ_ONLY and p != path and within(p, path)
        )

    def with_trees(self, trees: Iterable[Tree]) -> HostContract:
        """This contract with `trees` added; a tree at a path already listed replaces it."""
        merged = {normalise(t.path): t for t in self.trees}
        merged.update({normalise(t.path): t for t in trees})
        return HostContract(
            tuple(sorted(merged.values(), key=lambda t: t.path)),
            self.code_integrity,
            self.code_integrity_note,
            self.verified,
            self.host_namespaces,
            self.privileged,
        )


@dataclass(frozen=True)
class PathAccess:
    """One host path as a pod uses it: written (a writable mount), created by the kubelet, or only read."""

    path: str  # normalised
    writes: bool
    creates: bool = False  # hostPath type DirectoryOrCreate / FileOrCreate

    @property
    def installs_binaries(self) -> bool:
        return self.writes and installs_binaries(self.path)


def effect_of_path(access: PathAccess, contract: HostContract, os_name: str) -> tuple[Effect, str]:
    """What this access does on this OS, and why in one clause naming the tree and the OS."""
    if not access.writes and not access.creates:
        return Effect.WORKS, ""
    tree = contract.tree_of(access.path)
    verb = "writes" if access.writes else "creates"
    if tree.access is Access.READ_ONLY:
        return Effect.BREAKS, f"{verb} {access.path}; {tree.path} is {tree.describe()} on {os_name}"
    if access.writes:
        covered = contract.read_only_below(access.path)
        if covered:
            inner = covered[0]
            return Effect.BREAKS, (
                f"mounts {access.path} writable, which holds {inner.path}, {inner.describe()} on {os_name}"
            )
    if tree.access is Access.UNCERTAIN:
        return (
            Effect.DEGRADES,
            f"{verb} {access.path}; whether {tree.path} is writable on {os_name} is unknown",
        )
    if not access.writes:
        return Effect.WORKS, ""  # the kubelet creates it again at every pod start
    if access.installs_binaries:
        if tree.noexec:
            return Effect.BREAKS, (
                f"drops binaries into {access.path}; {tree.path} is {tree.describe()} on {os_name}, "
                "the host cannot run them"
            )
        if contract.code_integrity is not CodeIntegrity.OFF and not within(access.path, contract.verified):
            note = f" ({contract.code_integrity_note})" if contract.code_integrity_note else ""
            effect = Effect.BREAKS if contract.code_integrity is CodeIntegrity.ENFORCE else Effect.DEGRADES
            return effect, (
                f"drops binaries into {access.path}; code integrity on {os_name} "
                f"{'refuses' if effect is Effect.BREAKS else 'flags'} binaries from outside "
                f"{contract.verified}{note}"
            )
    if tree.volatile:
        return Effect.DEGRADES, (
            f"writes {access.path}; {tree.path} is {tree.describe()} on {os_name}: the writes are lost"
        )
    return Effect.WORKS, ""
