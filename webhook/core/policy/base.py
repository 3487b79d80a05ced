"""What every host-access check returns, and how a check says what its findings do to an OS.

A `Finding` is one piece of host access (check id, field path, a short stable reason, a detail quoting
the names and paths) with the facts its consequence depends on. A `Check` pairs the function that finds
them with the function that judges one finding against one OS's host contract.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from webhook.core.config import Config
from webhook.core.contracts import Effect, HostContract, PathAccess
from webhook.core.workloads import PodSpecView


@dataclass(frozen=True, order=True)
class Finding:
    """One piece of host access: `check` id, the `field` that asks for it, a short stable `reason`, and
    a `detail` that quotes the offending names and paths. `paths` (host-path) and
    `runs_package_manager` (host namespaces) are what its consequence per OS depends on."""

    check: str
    field: str
    reason: str
    detail: str
    paths: tuple[PathAccess, ...] = dataclasses.field(default=(), compare=False)
    runs_package_manager: bool = dataclasses.field(default=False, compare=False)

    @property
    def message(self) -> str:
        return f"{self.field}: {self.detail}"


@dataclass(frozen=True)
class Consequence:
    """What one finding does on one OS, and why (a clause naming the tree or feature and the OS)."""

    effect: Effect
    why: str = ""


WORKS = Consequence(Effect.WORKS)

CheckFunction = Callable[[PodSpecView, Config], list[Finding]]
EffectFunction = Callable[[Finding, HostContract, str], Consequence]


@dataclass(frozen=True)
class Check:
    """A registered check: its id (part of the interface), what it finds, and what a finding does to an
    OS given its host contract and display name. `fix` is the general advice for its findings; `cel` the
    apiserver-side prefilter."""

    id: str
    evaluate: CheckFunction
    effect: EffectFunction
    fix: str
    # CEL over a pod spec `s`, true whenever `evaluate` could find something: the chart's matchCondition
    # (hack/generate-chart.py) joins those of the enabled checks so the apiserver skips the rest.
    cel: str
