"""The immutable-OS profiles, one table: the evidence on a Node object, and the OS's host contract.

Evidence: any single exact label, label prefix, `osImage` prefix or kernel suffix is enough. Values
marked (U) in docs/profiles.md are unconfirmed on a live node; every value is overridable in config.
Host contracts follow docs/profiles.md (sources there): `/usr` is read-only everywhere; what else is
read-only, volatile or noexec differs per OS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from webhook.core.contracts import Access, CodeIntegrity, HostContract, Tree

PREFIX = "immutable-os.io"
PROFILE_LABEL = f"{PREFIX}/profile"
AKS_OS_SKU = "kubernetes.azure.com/os-sku"
AKS_OS_SKU_REQUESTED = "kubernetes.azure.com/os-sku-requested"
AKS_OS_SKU_EFFECTIVE = "kubernetes.azure.com/os-sku-effective"
AKS_IMAGE_VERSION = "kubernetes.azure.com/node-image-version"
GKE_OS_DISTRIBUTION = "cloud.google.com/gke-os-distribution"


@dataclass(frozen=True)
class Profile:
    """Evidence on a Node object that it runs one immutable OS, and that OS's host contract.

    `labels` are exact values; the prefix, osImage and kernel evidence classify nodes too, but cannot be
    written in a node selector (steering then uses other labels the nodes carry).
    """

    name: str
    display_name: str
    contract: HostContract
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    label_prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    os_image_prefixes: tuple[str, ...] = ()
    kernel_suffixes: tuple[str, ...] = ()
    enabled: bool = True

    @property
    def has_evidence(self) -> bool:
        return bool(self.labels or self.label_prefixes or self.os_image_prefixes or self.kernel_suffixes)


def _ro(path: str, note: str = "") -> Tree:
    return Tree(path, Access.READ_ONLY, note=note)


def _rw(path: str, note: str = "", *, volatile: bool = False, noexec: bool = False) -> Tree:
    return Tree(path, Access.WRITABLE, volatile=volatile, noexec=noexec, note=note)


def _aks_skus(*values: str) -> dict[str, tuple[str, ...]]:
    """AKS writes the SKU in three labels; which one carries the SKU name (not the family) varies."""
    return {AKS_OS_SKU_REQUESTED: values, AKS_OS_SKU: values, AKS_OS_SKU_EFFECTIVE: values}


_VERITY_USR = _ro("/usr", "dm-verity")
_ETC_OPT_VAR = (_rw("/etc"), _rw("/opt"), _rw("/var"))

# The one table. Azure Container Linux first: it replaces OS Guard and Flatcar on AKS.
BUILTIN_PROFILES: tuple[Profile, ...] = (
    Profile(
        "azure-container-linux",
        "Azure Container Linux",
        HostContract((_VERITY_USR, *_ETC_OPT_VAR)),
        labels=_aks_skus("AzureContainerLinux"),
        # Two shapes are published: the docs' and the image-gallery naming rule's.
        label_prefixes={AKS_IMAGE_VERSION: ("AKSAzureContainerLinux-", "AKSAzureLinux-acl")},
        os_image_prefixes=("Microsoft Azure Container Linux",),
    ),
    Profile(
        "azure-linux-osguard",
        "Azure Linux OS Guard",
        HostContract(
            (_VERITY_USR, *_ETC_OPT_VAR, _rw("/var/tmp", "tmpfs", volatile=True)),
            code_integrity=CodeIntegrity.AUDIT,
            code_integrity_note="IPE, audit in preview, enforcement planned",
        ),
        labels=_aks_skus("AzureLinuxOSGuard", "AzureLinux3OSGuard"),
        label_prefixes={AKS_IMAGE_VERSION: ("AKSAzureLinux-OSGuard",)},
        # osImage is the same as plain Azure Linux 3: labels are the only evidence.
    ),
    Profile(
        "flatcar",
        "Flatcar Container Linux",
        HostContract((_ro("/usr", "the /usr partition"), _rw("/"))),
        labels=_aks_skus("Flatcar"),
        label_prefixes={AKS_IMAGE_VERSION: ("AKSFlatcar-",)},
        os_image_prefixes=("Flatcar Container Linux",),
        kernel_suffixes=("-flatcar",),
    ),
    Profile(
        "bottlerocket",
        "Bottlerocket",
        HostContract(
            (
                _ro("/", "dm-verity root"),
                _rw("/etc", "tmpfs, rebuilt at boot", volatile=True),
                _rw("/var"),
                _rw("/opt"),
                _rw("/local"),
                _rw("/mnt"),
            )
        ),
        os_image_prefixes=("Bottlerocket OS",),
    ),
    Profile(
        "talos",
        "Talos Linux",
        HostContract(
            (
                _ro("/", "squashfs root"),
                _ro("/etc", "generated from the machine config"),
                _rw("/etc/kubernetes"),
                _rw("/etc/cni"),
                _rw("/var", "wiped at upgrade unless --preserve", volatile=True),
                Tree("/opt", Access.UNCERTAIN, note="unconfirmed"),
            )
        ),
        os_image_prefixes=("Talos (",),
    ),
    Profile(
        "fedora-coreos",
        "Fedora CoreOS",
        HostContract(
            (
                _ro("/", "ostree deployment root"),
                _ro("/usr", "ostree"),
                _rw("/etc"),
                _rw("/var"),
                # ostree links these into /var, so they are writable despite / and /usr.
                _rw("/opt", "a link to /var/opt"),
                _rw("/usr/local", "a link to /var/usrlocal"),
                _rw("/home", "a link to /var/home"),
                _rw("/root", "a link to /var/roothome"),
                _rw("/srv", "a link to /var/srv"),
                _rw("/mnt", "a link to /var/mnt"),
            )
        ),
        os_image_prefixes=("Fedora CoreOS",),
    ),
    Profile(
        "container-optimized-os",
        "Container-Optimized OS",
        HostContract(
            (
                _ro("/", "verified root"),
                _rw("/etc", "tmpfs, rebuilt at boot", volatile=True),
                _rw("/tmp", "tmpfs, noexec", volatile=True, noexec=True),
                _rw("/var", "noexec", noexec=True),
                _rw("/home", "noexec", noexec=True),
                _rw("/var/lib/docker"),
                _rw("/var/lib/containerd"),
                _rw("/var/lib/google"),
                _rw("/var/lib/toolbox"),
                _rw("/var/lib/cloud", "tmpfs", volatile=True),
                _rw("/mnt/disks", "tmpfs", volatile=True),
                _rw("/mnt/stateful_partition", "noexec", noexec=True),
                _rw("/home/kubernetes/bin", "GKE's kubelet and CNI binaries"),
            )
        ),
        labels={GKE_OS_DISTRIBUTION: ("cos",)},
        os_image_prefixes=("Container-Optimized OS",),
    ),
)

# Nodes marked immutable by a selector or an unknown marker value: only /usr is known read-only.
GENERIC_CONTRACT = HostContract((_ro("/usr"), Tree("/", Access.UNCERTAIN, note="unknown OS")))
GENERIC_DISPLAY_NAME = "an immutable OS"
