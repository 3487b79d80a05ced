"""What every host-access check returns: small, ordered findings with a stable reason and a detail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from webhook.core.config import Config
from webhook.core.workloads import PodSpecView


@dataclass(frozen=True, order=True)
class Finding:
    """One piece of host access: `check` id, the `field` that asks for it, a short stable `reason`,
    and a `detail` that quotes the offending names and paths."""

    check: str
    field: str
    reason: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.field}: {self.detail}"


CheckFunction = Callable[[PodSpecView, Config], list[Finding]]


@dataclass(frozen=True)
class Check:
    """A registered check: its id (part of the interface), why it breaks on immutable nodes, its function."""

    id: str
    why: str
    evaluate: CheckFunction
