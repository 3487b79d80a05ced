"""The optional node labeller: `immutable-os.io/profile=<profile>` on every node whose own evidence says so.

`serve --label-nodes` feeds it each published node snapshot. One worker thread compares every changed node
with what its evidence calls for (`marker_value`) and writes the difference by server-side apply under its
own field manager, owning that one label and nothing else:
- a node that should carry the label and does not (or carries another value): apply `{labels: {key: value}}`;
- a node that should not, where this manager owns the label: apply no labels, which drops only ours;
- anything else (right value already there, whoever set it; a label someone else owns): no request.
Replicas share the field manager, so two applying the same value is a no-op for the apiserver. A 409 means
another manager owns a different value: logged once, and left alone. Each pass over a snapshot makes at
most `attempts` requests per node (transient errors end the pass; the next snapshot retries), a node
version is planned once, and the watch thread and the request path never wait on any of it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import kubernetes.client
import urllib3.exceptions

from webhook.adapters.cluster.events import EMPTY, Snapshot, WireObject
from webhook.adapters.cluster.mirror import DEFAULT_BACKOFF, Backoff
from webhook.core.config import Config
from webhook.core.placement.inventory import Node, marker_value
from webhook.core.profiles import PROFILE_LABEL
from webhook.errors import NodeListError

logger = logging.getLogger("webhook.labeller")

FIELD_MANAGER = "immutable-os-webhook-labeller"
APPLY_PATCH = "application/apply-patch+yaml"

ApplyFunction = Callable[[str, Mapping[str, Any]], None]
"""Server-side apply `body` to the node `name` (raises the client's ApiException on an HTTP error)."""


@dataclass(frozen=True)
class LabelChange:
    """What one node needs: `value` applied, or (None) the label this manager owns dropped."""

    node: str
    value: str | None
    current: str | None

    def apply_body(self) -> dict[str, Any]:
        """The whole intent of this manager for the node: only the label, or nothing at all."""
        metadata: dict[str, Any] = {"name": self.node}
        if self.value is not None:
            metadata["labels"] = {PROFILE_LABEL: self.value}
        return {"apiVersion": "v1", "kind": "Node", "metadata": metadata}


def owns_label(obj: WireObject, manager: str = FIELD_MANAGER) -> bool:
    """True if `manager`'s server-side apply owns the node's `immutable-os.io/profile` label."""
    entries = _get(obj, "metadata", "managedFields")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("manager") == manager and entry.get("operation") == "Apply":
            labels = _get(entry, "fieldsV1", "f:metadata", "f:labels")
            if isinstance(labels, dict) and f"f:{PROFILE_LABEL}" in labels:
                return True
    return False


def plan(obj: WireObject, config: Config, manager: str = FIELD_MANAGER) -> LabelChange | None:
    """The change this node needs, or None; raises NodeListError for a node that is not a Node."""
    node = Node.from_wire(obj)
    wanted = marker_value(node, config)
    current = node.labels.get(PROFILE_LABEL)
    if wanted is not None and current != wanted:
        return LabelChange(node.name, wanted, current)
    if wanted is None and current is not None and owns_label(obj, manager):
        return LabelChange(node.name, None, current)
    return None


def server_side_apply(
    api_client: kubernetes.client.ApiClient,
    manager: str = FIELD_MANAGER,
    timeout_seconds: tuple[float, float] = (5.0, 15.0),
) -> ApplyFunction:
    """An ApplyFunction over the API: PATCH application/apply-patch+yaml, `manager`, force=false."""
    core = kubernetes.client.CoreV1Api(api_client)

    def apply(name: str, body: Mapping[str, Any]) -> None:
        core.patch_node(
            name,
            dict(body),
            field_manager=manager,
            force=False,
            _content_type=APPLY_PATCH,
            _request_timeout=timeout_seconds,
        )

    return apply


class Outcome(Enum):
    APPLIED = "applied"
    CONFLICT = "conflict"  # another manager owns a different value
    REFUSED = "refused"  # a client error (403, 422, ...): not worth repeating for this node version
    GAVE_UP = "gave-up"  # transient errors `attempts` times in a row


class NodeLabeller:
    """A worker thread that keeps the profile label on nodes; fed snapshots by `observe` from any thread."""

    def __init__(
        self,
        apply: ApplyFunction,
        config: Config,
        *,
        manager: str = FIELD_MANAGER,
        attempts: int = 3,
        backoff: Backoff = DEFAULT_BACKOFF,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self._apply = apply
        self._config = config
        self._manager = manager
        self._attempts = attempts
        self._backoff = backoff
        self._uniform = uniform
        # Only the newest snapshot matters: changes that pile up while the worker is busy coalesce.
        self._latest: Snapshot = EMPTY
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Worker-only state. A node version (name -> resourceVersion) is planned once, whatever came of it.
        self._planned: dict[str, str] = {}
        # (label found, value wanted) per node whose label another manager owns; logged once each.
        self._conflicts: dict[str, tuple[str | None, str | None]] = {}
        self._forbidden = False
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)

    def observe(self, snapshot: Snapshot) -> None:
        """Hand over the newest node snapshot; returns at once."""
        self._latest = snapshot
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            raise RuntimeError("the node labeller is already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="node-labeller", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float = 2.0) -> bool:
        """Stop after the request in flight, if any; True if the worker has ended within the timeout."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
        return not self.running

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                self._pass(self._latest)
            except Exception:
                # A bug here must not end labelling for good; the next snapshot brings another pass.
                logger.exception("node labeller pass failed")

    def _pass(self, snapshot: Snapshot) -> None:
        for name in self._planned.keys() - snapshot.keys():
            del self._planned[name]
            self._conflicts.pop(name, None)
        for name, obj in snapshot.items():
            if self._stopping.is_set():
                return
            version = str(_get(obj, "metadata", "resourceVersion"))
            if self._planned.get(name) == version:
                continue
            self._planned[name] = version
            try:
                change = plan(obj, self._config, self._manager)
            except NodeListError as error:
                logger.debug("node not labelled", extra={"fields": {"node": name, "error": str(error)}})
                continue
            if change is None:
                self._conflicts.pop(name, None)
            elif self._conflicts.get(name) != (change.current, change.value) and (
                self._change(change) is Outcome.GAVE_UP
            ):
                # The API is struggling: this node and those not reached yet wait for the next snapshot.
                del self._planned[name]
                return

    def _change(self, change: LabelChange) -> Outcome:
        outcome = self._attempt(change)
        self.outcomes[outcome] += 1
        fields = {"node": change.node, "label": PROFILE_LABEL, "value": change.value, "found": change.current}
        if outcome is Outcome.APPLIED:
            logger.info("node labelled" if change.value else "node label removed", extra={"fields": fields})
        elif outcome is Outcome.CONFLICT:
            self._conflicts[change.node] = (change.current, change.value)
            logger.warning("node label left to its owner", extra={"fields": fields})
        else:
            self._conflicts.pop(change.node, None)
        return outcome

    def _attempt(self, change: LabelChange) -> Outcome:
        fields: dict[str, Any] = {"node": change.node, "value": change.value}
        for attempt in range(1, self._attempts + 1):
            try:
                self._apply(change.node, change.apply_body())
                self._forbidden = False
                return Outcome.APPLIED
            except kubernetes.client.ApiException as error:
                if error.status == 409:
                    return Outcome.CONFLICT
                fields["error"] = f"HTTP {error.status} {error.reason}"
                if error.status not in (0, 429) and error.status < 500:
                    self._refused(error.status, fields)
                    return Outcome.REFUSED
            except (urllib3.exceptions.HTTPError, OSError) as error:
                fields["error"] = f"{type(error).__name__}: {error}"
            if attempt < self._attempts and self._stopping.wait(self._backoff.delay(attempt, self._uniform)):
                break
        logger.warning("node label not written; next snapshot tries again", extra={"fields": fields})
        return Outcome.GAVE_UP

    def _refused(self, status: int, fields: dict[str, Any]) -> None:
        if status not in (401, 403):
            logger.warning("node label refused", extra={"fields": fields})
        elif not self._forbidden:
            # Every node would say the same: once, until an apply succeeds again.
            self._forbidden = True
            fields["fix"] = "give the webhook's service account patch on nodes (chart: labeller.enabled)"
            logger.error("node labeller forbidden", extra={"fields": fields})


def _get(obj: object, *path: str) -> object:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
