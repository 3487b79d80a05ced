"""Tests for webhook.adapters.cluster.labeller: what each node needs, and the worker that writes it.

The worker is fed plain snapshots and a fake apply function; server-side apply itself, against a real
apiserver, is proven in tests/e2e/test_cluster.py.
"""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kubernetes.client
import pytest

from webhook.adapters.cluster import Backoff, NodeLabeller, Snapshot
from webhook.adapters.cluster.labeller import FIELD_MANAGER, LabelChange, Outcome, owns_label, plan
from webhook.core.config import PROFILE_LABEL, Config

SKU = "kubernetes.azure.com/os-sku"
WAIT_SECONDS = 5.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS}s waiting until {what}")
        time.sleep(0.002)


def managed(manager: str, operation: str = "Apply", *, label: bool = True) -> dict[str, Any]:
    labels = {f"f:{PROFILE_LABEL}": {}} if label else {"f:other": {}}
    return {"manager": manager, "operation": operation, "apiVersion": "v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": labels}}}  # fmt: skip


def node(
    name: str,
    rv: str = "1",
    *,
    sku: str = "Ubuntu",
    marker: str | None = None,
    owners: list[dict[str, Any]] | None = None,
    os_image: str = "",
) -> dict[str, Any]:
    labels = {SKU: sku, "agentpool": name.split("-")[0]}
    if marker is not None:
        labels[PROFILE_LABEL] = marker
    metadata: dict[str, Any] = {"name": name, "resourceVersion": rv, "labels": labels}
    if owners is not None:
        metadata["managedFields"] = owners
    return {"apiVersion": "v1", "kind": "Node", "metadata": metadata,
            "status": {"nodeInfo": {"osImage": os_image}}}  # fmt: skip


OURS = [managed(FIELD_MANAGER)]
THEIRS = [managed("platform-team")]
CONFIG = Config()


# plan ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "config", "change"),
    [
        (node("fc-1", sku="Flatcar"), CONFIG, LabelChange("fc-1", "flatcar", None)),
        (node("fc-1", sku="Flatcar", marker="flatcar", owners=THEIRS), CONFIG, None),
        (node("fc-1", sku="Flatcar", marker="flatcar", owners=OURS), CONFIG, None),
        (node("fc-1", sku="Flatcar", marker="corp", owners=THEIRS), CONFIG, LabelChange("fc-1", "flatcar", "corp")),
        (node("fc-1", sku="Flatcar", marker="azure-linux-osguard", owners=OURS), CONFIG,
         LabelChange("fc-1", "flatcar", "azure-linux-osguard")),
        (node("og-1", sku="AzureLinuxOSGuard"), CONFIG, LabelChange("og-1", "azure-linux-osguard", None)),
        (node("br-1", sku="", os_image="Bottlerocket OS 1.20.0 (aws-k8s-1.30)"), CONFIG,
         LabelChange("br-1", "bottlerocket", None)),
        (node("gp-1"), CONFIG, None),
        (node("gp-1", marker="flatcar", owners=OURS), CONFIG, LabelChange("gp-1", None, "flatcar")),
        (node("gp-1", marker="flatcar", owners=[*THEIRS, *OURS]), CONFIG, LabelChange("gp-1", None, "flatcar")),
        (node("gp-1", marker="flatcar", owners=THEIRS), CONFIG, None),
        (node("gp-1", marker="flatcar"), CONFIG, None),
        (node("fc-1", sku="Flatcar", marker="flatcar", owners=OURS), Config.from_dict({"profiles": {"flatcar": False}}),
         LabelChange("fc-1", None, "flatcar")),
    ],
    ids=[
        "immutable-unlabelled", "right-value-someone-elses", "right-value-ours", "other-value-someone-elses",
        "our-value-after-the-evidence-changed", "os-guard-by-labels", "bottlerocket-by-os-image", "general",
        "general-with-our-label", "general-with-a-label-we-share", "general-with-someone-elses-label",
        "general-with-a-label-nobody-applied", "profile-switched-off",
    ],
)  # fmt: skip
def test_plan_asks_only_for_what_the_evidence_and_ownership_call_for(
    obj: dict[str, Any], config: Config, change: LabelChange | None
) -> None:
    assert plan(obj, config) == change


@pytest.mark.parametrize(
    ("fields", "owned"),
    [
        ([managed(FIELD_MANAGER)], True),
        ([managed("kubectl"), managed(FIELD_MANAGER)], True),
        ([managed(FIELD_MANAGER, "Update")], False),
        ([managed("platform-team")], False),
        ([managed(FIELD_MANAGER, label=False)], False),
        (None, False),
        ("not a list", False),
        ([{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": []}], False),
    ],
    ids=["ours", "among-others", "an-update-not-an-apply", "another-manager", "we-own-other-fields",
         "no-managed-fields", "malformed", "malformed-entry"],
)  # fmt: skip
def test_owns_label_reads_managed_fields(fields: object, owned: bool) -> None:
    obj = node("n-1", marker="flatcar")
    obj["metadata"]["managedFields"] = fields
    assert owns_label(obj) is owned


def test_the_apply_body_holds_only_the_label_or_nothing() -> None:
    assert LabelChange("n-1", "flatcar", None).apply_body() == {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-1", "labels": {PROFILE_LABEL: "flatcar"}}
    }  # fmt: skip
    assert LabelChange("n-1", None, "flatcar").apply_body() == {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-1"}
    }  # fmt: skip


# the worker ---------------------------------------------------------------------------------------------


class FakeApply:
    """Records every apply; answers from a script of exceptions (None = success); can hold a call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.script: dict[str, list[Exception | None]] = {}
        self.hold = threading.Event()
        self.hold.set()
        self.holding = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, name: str, body: Mapping[str, Any]) -> None:
        labels = body["metadata"].get("labels") or {}
        with self._lock:
            self.calls.append((name, labels.get(PROFILE_LABEL)))
            answers = self.script.get(name) or []
            answer = answers.pop(0) if answers else None
        self.holding.set()
        self.hold.wait(WAIT_SECONDS)
        if answer is not None:
            raise answer

    def of(self, name: str) -> list[str | None]:
        with self._lock:
            return [value for n, value in self.calls if n == name]

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.calls)


def snapshot(*nodes: dict[str, Any]) -> Snapshot:
    return types.MappingProxyType({n["metadata"]["name"]: n for n in nodes})


def api_error(status: int, reason: str) -> kubernetes.client.ApiException:
    return kubernetes.client.ApiException(status=status, reason=reason)


@pytest.fixture
def fake_apply() -> FakeApply:
    return FakeApply()


@pytest.fixture
def labeller(fake_apply: FakeApply) -> Iterator[NodeLabeller]:
    worker = NodeLabeller(fake_apply, CONFIG, backoff=Backoff(initial_seconds=0.001, max_seconds=0.002))
    worker.start()
    yield worker
    fake_apply.hold.set()
    assert worker.stop(), "labeller thread still running after stop()"


def settle(labeller: NodeLabeller, fake_apply: FakeApply, *nodes: dict[str, Any], sentinel: str) -> None:
    """Observe `nodes` plus an unlabelled Flatcar node `sentinel` at the end, and wait until the worker
    reaches it: everything before it in the same pass has been handled."""
    labeller.observe(snapshot(*nodes, node(sentinel, sku="Flatcar")))
    wait_until(lambda: fake_apply.of(sentinel) == ["flatcar"], f"the pass reaches {sentinel}")


def test_labels_what_needs_it_once_and_leaves_the_rest(labeller: NodeLabeller, fake_apply: FakeApply) -> None:
    general = node("gp-1")
    flatcar = node("fc-1", sku="Flatcar")
    done = node("og-1", sku="AzureLinuxOSGuard", marker="azure-linux-osguard", owners=OURS)
    ours_to_drop = node("gp-2", marker="flatcar", owners=OURS)
    settle(labeller, fake_apply, general, flatcar, done, ours_to_drop, sentinel="s1-1")
    assert fake_apply.calls == [("fc-1", "flatcar"), ("gp-2", None), ("s1-1", "flatcar")]

    # The same versions again, and our own write coming back as a new version: nothing more to do.
    labelled = node("fc-1", "2", sku="Flatcar", marker="flatcar", owners=OURS)
    dropped = node("gp-2", "2")
    settle(
        labeller, fake_apply, general, labelled, done, dropped, node("s1-1", sku="Flatcar"), sentinel="s2-1"
    )
    assert [name for name, _ in fake_apply.calls] == ["fc-1", "gp-2", "s1-1", "s2-1"]
    assert labeller.outcomes[Outcome.APPLIED] == 4


def test_changes_that_pile_up_while_busy_coalesce_per_node(
    labeller: NodeLabeller, fake_apply: FakeApply
) -> None:
    fake_apply.hold.clear()
    labeller.observe(snapshot(node("fc-1", sku="Flatcar")))
    wait_until(fake_apply.holding.is_set, "the first apply is in flight")
    # While it is, the second node changes three times; only its last state is worth a request.
    for rv, sku in (("2", "Flatcar"), ("3", "AzureLinuxOSGuard"), ("4", "Flatcar")):
        labeller.observe(snapshot(node("fc-1", sku="Flatcar"), node("x-1", rv, sku=sku)))
    fake_apply.hold.set()
    settle(labeller, fake_apply, node("fc-1", sku="Flatcar"), node("x-1", "4", sku="Flatcar"), sentinel="s-1")
    assert fake_apply.calls == [("fc-1", "flatcar"), ("x-1", "flatcar"), ("s-1", "flatcar")]


def test_a_conflict_is_logged_once_and_left_alone(
    labeller: NodeLabeller, fake_apply: FakeApply, caplog: pytest.LogCaptureFixture
) -> None:
    fake_apply.script["fc-1"] = [api_error(409, "Conflict")]
    claimed = node("fc-1", sku="Flatcar", marker="corp", owners=THEIRS)
    with caplog.at_level(logging.INFO, logger="webhook.labeller"):
        settle(labeller, fake_apply, claimed, sentinel="s1-1")
        # The node changes (a status update) but its label does not: no second try, no second log.
        settle(labeller, fake_apply, node("fc-1", "2", sku="Flatcar", marker="corp", owners=THEIRS),
               node("s1-1", sku="Flatcar"), sentinel="s2-1")  # fmt: skip
    assert fake_apply.of("fc-1") == ["flatcar"]
    assert [r.getMessage() for r in caplog.records].count("node label left to its owner") == 1
    assert labeller.outcomes[Outcome.CONFLICT] == 1

    # Once the owner removes its label, the node is ours to label.
    settle(labeller, fake_apply, node("fc-1", "3", sku="Flatcar", owners=THEIRS), sentinel="s3-1")
    assert fake_apply.of("fc-1") == ["flatcar", "flatcar"]


def test_transient_errors_are_retried_a_bounded_number_of_times_then_with_the_next_snapshot(
    labeller: NodeLabeller, fake_apply: FakeApply
) -> None:
    fake_apply.script["fc-1"] = [
        api_error(500, "Internal"),
        api_error(429, "TooManyRequests"),
        OSError("reset"),
    ]
    labeller.observe(snapshot(node("fc-1", sku="Flatcar"), node("fc-2", sku="Flatcar")))
    wait_until(lambda: labeller.outcomes[Outcome.GAVE_UP] == 1, "three attempts fail")
    # The pass ended there: fc-2 waits, and fc-1 is tried again, with the next snapshot (same versions).
    assert [name for name, _ in fake_apply.calls] == ["fc-1"] * 3
    settle(labeller, fake_apply, node("fc-1", sku="Flatcar"), node("fc-2", sku="Flatcar"), sentinel="s-1")
    assert [name for name, _ in fake_apply.calls] == ["fc-1"] * 4 + ["fc-2", "s-1"]


def test_forbidden_is_logged_once_for_all_nodes_and_not_repeated_per_version(
    labeller: NodeLabeller, fake_apply: FakeApply, caplog: pytest.LogCaptureFixture
) -> None:
    fake_apply.script = {name: [api_error(403, "Forbidden")] for name in ("fc-1", "fc-2", "fc-3")}
    with caplog.at_level(logging.INFO, logger="webhook.labeller"):
        labeller.observe(snapshot(*(node(f"fc-{i}", sku="Flatcar") for i in (1, 2, 3))))
        wait_until(lambda: labeller.outcomes[Outcome.REFUSED] == 3, "all three are refused")
        settle(labeller, fake_apply, *(node(f"fc-{i}", sku="Flatcar") for i in (1, 2, 3)), sentinel="s-1")
    assert fake_apply.count == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["node labeller forbidden"]
    assert "patch on nodes" in errors[0].fields["fix"]  # type: ignore[attr-defined]


def test_a_node_that_is_not_a_node_is_skipped(labeller: NodeLabeller, fake_apply: FakeApply) -> None:
    broken = {"metadata": {"name": "bad-1", "resourceVersion": "1", "labels": ["not", "a", "map"]}}
    settle(labeller, fake_apply, broken, sentinel="s-1")
    assert fake_apply.calls == [("s-1", "flatcar")]


def test_stop_returns_while_waiting_for_snapshots(fake_apply: FakeApply) -> None:
    worker = NodeLabeller(fake_apply, CONFIG)
    worker.start()
    assert worker.running
    assert worker.stop(timeout_seconds=2.0)
    assert not worker.running
