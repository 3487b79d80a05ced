"""Tests for webhook.adapters.cluster.events: the list+watch reducer, fed sequences of what the API says."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from webhook.adapters.cluster.events import (
    MIN_HEALTHY_WATCH_SECONDS,
    Action,
    Collection,
    Failed,
    Happening,
    Line,
    Listed,
    Publish,
    Retry,
    Unusable,
    WatchEnded,
    WatchOpened,
    is_stale,
    parse_list,
    reduce,
)

# Builders: each takes `at` (monotonic seconds), so a sequence reads as a timeline ---------------------------


def listed(at: float, rv: str, *names: str) -> Listed:
    items = [{"metadata": {"name": n, "resourceVersion": rv}} for n in names]
    body = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}
    return Listed(json.dumps(body).encode(), at)


def event(at: float, kind: str, name: str | None, rv: str | None, **extra: Any) -> Line:
    metadata = {k: v for k, v in {"name": name, "resourceVersion": rv}.items() if v is not None}
    obj = {"kind": "Node", "apiVersion": "v1", "metadata": metadata, **extra}
    return Line(json.dumps({"type": kind, "object": obj}).encode(), at)


def added(at: float, name: str, rv: str) -> Line:
    return event(at, "ADDED", name, rv)


def modified(at: float, name: str, rv: str) -> Line:
    return event(at, "MODIFIED", name, rv, spec={"unschedulable": True})


def deleted(at: float, name: str, rv: str) -> Line:
    return event(at, "DELETED", name, rv)


def bookmark(at: float, rv: str) -> Line:
    return event(at, "BOOKMARK", None, rv)


def error(at: float, code: int) -> Line:
    status = {"kind": "Status", "status": "Failure", "code": code, "reason": "Expired", "message": "too old"}
    return Line(json.dumps({"type": "ERROR", "object": status}).encode(), at)


def opened(at: float) -> WatchOpened:
    return WatchOpened(at)


def refused(at: float) -> Failed:
    return Failed("MaxRetryError: connection refused", at)


def http(at: float, status: int) -> Failed:
    return Failed(f"HTTP {status}", at, status)


def dropped(at: float) -> Failed:
    return Failed("ProtocolError: connection broken", at)


def run(happenings: Sequence[Happening]) -> tuple[Collection, list[str]]:
    state, actions = Collection(), []
    for happening in happenings:
        step = reduce(state, happening)
        state = step.state
        actions.append(said(step.action))
    return state, actions


def said(action: Action) -> str:
    """An action in a few words: publish, proceed, relist@n (after a 410), list@n, watch@n (after failures)."""
    if not isinstance(action, Retry):
        return "publish" if isinstance(action, Publish) else "proceed"
    if action.expired:
        return f"relist@{action.backoff_step}"
    return f"{'list' if action.relist else 'watch'}@{action.backoff_step}"


def summary(state: Collection) -> dict[str, Any]:
    return {
        "names": sorted(state.objects),
        "rv": state.resource_version,
        "must_list": state.must_list,
        "failures": state.failures,
        "restarts": state.restarts,
        "relists": state.relists,
    }


def expect(names: Sequence[str], rv: str | None, *, must_list: bool = False, failures: int = 0,
           restarts: int = 0, relists: int = 0) -> dict[str, Any]:  # fmt: skip
    return {"names": sorted(names), "rv": rv, "must_list": must_list, "failures": failures,
            "restarts": restarts, "relists": relists}  # fmt: skip


# The table -------------------------------------------------------------------------------------------------

START = [listed(0, "10", "a", "b"), opened(0)]

CASES = [
    pytest.param(START, ["publish", "proceed"], expect(["a", "b"], "10"), id="list-then-watch"),
    pytest.param(
        [*START, added(1, "c", "11"), modified(2, "a", "12"), deleted(3, "b", "13")],
        ["publish", "proceed", "publish", "publish", "publish"],
        expect(["a", "c"], "13"),
        id="added-modified-deleted",
    ),
    pytest.param(
        [*START, deleted(1, "zz", "11")], ["publish", "proceed", "publish"], expect(["a", "b"], "11"),
        id="deleting-an-unknown-object-moves-the-resource-version",
    ),
    pytest.param([*START, bookmark(1, "20")], ["publish", "proceed", "proceed"], expect(["a", "b"], "20"),
                 id="bookmark-moves-the-resource-version-without-publishing"),
    pytest.param(
        [*START, added(5, "c", "11"), error(6, 410), listed(6, "30", "c"), opened(6), added(7, "d", "31")],
        ["publish", "proceed", "publish", "relist@0", "publish", "proceed", "publish"],
        expect(["c", "d"], "31", relists=1),
        id="error-event-410-relists-at-once-and-the-list-replaces-everything",
    ),
    pytest.param(
        [*START, dropped(5), http(5, 410), listed(5, "30", "a")],
        ["publish", "proceed", "watch@1", "relist@0", "publish"],
        expect(["a"], "30", restarts=1, relists=1),
        id="http-410-on-the-rewatch-relists-at-once",
    ),
    pytest.param(
        [*START, error(0, 410), listed(0, "11", "a"), opened(0), error(0, 410), listed(0, "12", "a"),
         opened(0), http(0, 410), listed(0, "13", "a"), opened(0)],
        ["publish", "proceed", "relist@0", "publish", "proceed", "relist@1", "publish", "proceed",
         "relist@2", "publish", "proceed"],
        expect(["a"], "13", relists=3),
        id="a-410-storm-backs-off-more-each-time",
    ),
    pytest.param(
        [*START, error(0, 410), listed(0, "11", "a"), opened(0), error(0, 410), listed(0, "12", "a"),
         opened(0), bookmark(1, "13"), error(2, 410)],
        ["publish", "proceed", "relist@0", "publish", "proceed", "relist@1", "publish", "proceed",
         "proceed", "relist@0"],
        expect(["a"], "13", must_list=True, relists=3),
        id="an-event-ends-a-410-storm",
    ),
    pytest.param(
        [*START, added(1, "c", "11"), dropped(2), refused(3), refused(4), refused(5), opened(25),
         error(25, 410), listed(25, "40", "a", "c", "new"), opened(25), added(26, "newer", "41")],
        ["publish", "proceed", "publish", "watch@1", "watch@2", "watch@3", "watch@4", "proceed",
         "relist@0", "publish", "proceed", "publish"],
        expect(["a", "c", "new", "newer"], "41", restarts=4, relists=1),
        id="after-an-outage-the-first-answer-ends-the-backoff-and-a-410-relists-without-a-second-wait",
    ),
    pytest.param(
        [*START, dropped(1), http(2, 503), http(3, 429), opened(10), dropped(15)],
        ["publish", "proceed", "watch@1", "watch@2", "watch@3", "proceed", "watch@1"],
        expect(["a", "b"], "10", failures=1, restarts=4),
        id="an-established-watch-resets-the-failures-without-any-event",
    ),
    pytest.param(
        [*START, dropped(1), http(2, 503), opened(3), dropped(3 + MIN_HEALTHY_WATCH_SECONDS / 2),
         opened(4), error(4, 500)],
        ["publish", "proceed", "watch@1", "watch@2", "proceed", "watch@3", "proceed", "watch@4"],
        expect(["a", "b"], "10", failures=4, restarts=4),
        id="a-watch-that-breaks-at-once-without-events-does-not-count-as-established",
    ),
    pytest.param(
        [*START, dropped(0.1), opened(0.2), added(0.3, "c", "11"), dropped(0.4)],
        ["publish", "proceed", "watch@1", "proceed", "publish", "watch@1"],
        expect(["a", "b", "c"], "11", failures=1, restarts=2),
        id="a-short-watch-that-gave-an-event-counts-as-established",
    ),
    pytest.param(
        [*START, WatchEnded(300), opened(300), WatchEnded(300.01), opened(301), WatchEnded(301.2)],
        ["publish", "proceed", "proceed", "proceed", "watch@1", "proceed", "watch@2"],
        expect(["a", "b"], "10", failures=2, restarts=2),
        id="a-clean-end-renews-but-ending-at-once-without-events-is-a-failure",
    ),
    pytest.param(
        [http(0, 500), http(1, 410), Listed(b"<html>Sign in</html>", 2), Listed(b"[]", 3),
         listed(4, "10", "a"), opened(4)],
        ["list@1", "list@2", "list@3", "list@4", "publish", "proceed"],
        expect(["a"], "10", restarts=4),
        id="failed-lists-back-off-until-one-succeeds-and-a-410-on-a-list-is-a-plain-failure",
    ),
    pytest.param(
        [*START, error(1, 500)], ["publish", "proceed", "watch@1"], expect(["a", "b"], "10", failures=1, restarts=1),
        id="error-event-other-than-410-rewatches-from-the-last-resource-version",
    ),
    pytest.param(
        [*START, error(0, 410), refused(1), refused(2), listed(3, "20", "a")],
        ["publish", "proceed", "relist@0", "list@1", "list@2", "publish"],
        expect(["a"], "20", restarts=2, relists=1),
        id="a-failure-after-a-410-lists-again-rather-than-watching-an-expired-version",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("happenings", "actions", "final"), CASES)
def test_sequences(happenings: list[Happening], actions: list[str], final: dict[str, Any]) -> None:
    state, said_actions = run(happenings)
    assert said_actions == actions
    assert summary(state) == final


MALFORMED = [
    pytest.param(Line(b"not json", 1), id="not-json"),
    pytest.param(Line(b'{"type": "ADDED"}', 1), id="no-object"),
    pytest.param(Line(b'["ADDED"]', 1), id="not-an-object"),
    pytest.param(event(1, "SURPRISE", "z", "99"), id="unknown-type"),
    pytest.param(event(1, "ADDED", "z", None), id="no-resource-version"),
    pytest.param(event(1, "MODIFIED", None, "99"), id="no-name"),
    pytest.param(event(1, "BOOKMARK", None, None), id="bookmark-without-resource-version"),
]


@pytest.mark.parametrize("line", MALFORMED)
def test_a_malformed_line_rewatches_from_the_last_good_resource_version(line: Line) -> None:
    state, actions = run([*START, added(0.5, "c", "11"), line])
    assert actions[-1] == "watch@1"
    assert (state.resource_version, sorted(state.objects)) == ("11", ["a", "b", "c"])
    assert (state.restarts, state.must_list) == (1, False)


def test_published_snapshots_are_never_changed_and_unchanged_steps_keep_them() -> None:
    first = reduce(Collection(), listed(0, "10", "a")).state
    after_open = reduce(first, opened(0)).state
    after_bookmark = reduce(after_open, bookmark(1, "11")).state
    assert after_bookmark.objects is first.objects
    changed = reduce(after_bookmark, modified(2, "a", "12")).state
    gone = reduce(changed, deleted(3, "a", "13")).state
    assert first.objects["a"]["metadata"]["resourceVersion"] == "10"
    assert changed.objects["a"]["spec"] == {"unschedulable": True}
    assert dict(gone.objects) == {}
    with pytest.raises(TypeError):
        changed.objects["b"] = {}  # type: ignore[index]


def test_signs_of_life_move_alive_at_and_failures_do_not() -> None:
    times = []
    state = Collection()
    for happening in [listed(1, "10"), opened(2), bookmark(3, "11"), dropped(4), refused(5), opened(6),
                      added(7, "a", "12"), WatchEnded(8), error(9, 410)]:  # fmt: skip
        state = reduce(state, happening).state
        times.append(state.alive_at)
    assert times == [1, 2, 3, 3, 3, 6, 7, 8, 8]


@pytest.mark.parametrize(
    ("happenings", "now", "max_age", "stale"),
    [
        ([], 0, 600, True),
        ([http(0, 500)], 1, 600, True),
        ([listed(100, "1")], 700, 600, False),
        ([listed(100, "1")], 700.5, 600, True),
        ([listed(100, "1"), opened(100), dropped(101), refused(150)], 650, 600, False),
        ([listed(100, "1"), opened(100), dropped(101), refused(150), opened(690)], 1200, 600, False),
    ],
    ids=["never-listed", "list-failed", "at-the-limit", "past-the-limit", "outage-within-the-limit",
         "recovered-after-the-outage"],
)  # fmt: skip
def test_is_stale_judges_from_the_last_sign_of_life(
    happenings: list[Happening], now: float, max_age: float, stale: bool
) -> None:
    state, _ = run(happenings)
    assert is_stale(state, now, max_age) is stale


def test_parse_list_restores_kind_and_api_version_on_items() -> None:
    body = json.dumps(
        {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
         "items": [{"metadata": {"name": "default"}}]}
    ).encode()  # fmt: skip
    objects, rv = parse_list(body)
    assert rv == "7"
    assert objects == {"default": {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "default"}}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"items": []}', "without metadata.resourceVersion"),
        (b'{"metadata": {"resourceVersion": "1"}, "items": {}}', "or items"),
        (
            b'{"metadata": {"resourceVersion": "1"}, "items": [{"metadata": {}}]}',
            "item without metadata.name",
        ),
    ],
    ids=["html", "array", "no-resource-version", "items-not-a-list", "item-without-name"],
)
def test_parse_list_refuses_what_it_cannot_apply(body: bytes, message: str) -> None:
    with pytest.raises(Unusable, match=message):
        parse_list(body)
