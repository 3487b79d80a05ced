"""What list+watch does to one collection, as a pure function: `reduce(state, happening) -> Step`.

The loop in `mirror` does the HTTP and the waiting; everything it hears (a list body, a watch opening, one
line of a watch stream, a clean end, a failure) goes through `reduce`, which returns the next `Collection`
and the one action the loop takes: `Publish` the objects, `Proceed`, or `Retry` after a backoff step.

    list -> publish -> watch from the list's resourceVersion -> events -> publish -> ... and on trouble:
      410 Gone (HTTP status or ERROR event)  -> list again (`relists` += 1); at once the first time, backing
                                                off only while 410s follow each other with no event between
      any other error, a malformed line,     -> back off, then watch again from the last resourceVersion (or
      a dropped stream                          list again if no list has succeeded since a 410) (`restarts`)

`failures` counts the failed attempts in a row and sets the backoff step. It is 0 again as soon as a list
succeeds or a watch is established, so after an outage the first answer from the API ends the backoff; a
watch that then breaks within `MIN_HEALTHY_WATCH_SECONDS` without a single event (a flapping proxy) does
not count as established. Time is an input (`at`, monotonic seconds), never read here.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

WireObject = Mapping[str, Any]
Snapshot = Mapping[str, WireObject]
"""Object name -> the object as a wire-format dict; read-only, and never changed after publishing."""

EMPTY: Snapshot = types.MappingProxyType({})

# A watch that ends this soon without a single event is a misbehaving server or proxy, not a renewal;
# client-go's reflector draws the same line.
MIN_HEALTHY_WATCH_SECONDS = 1.0


# The state --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenWatch:
    """The watch stream being read: when it opened, the failure count before it, the events it gave."""

    opened_at: float
    failures_before: int
    events: int = 0


@dataclass(frozen=True)
class Collection:
    """One cluster-scoped collection as list+watch knows it."""

    objects: Snapshot = field(default_factory=lambda: EMPTY)
    resource_version: str | None = None  # where the next watch starts
    must_list: bool = True  # before the first list, and after a 410 until a list succeeds
    synced: bool = False  # a list has succeeded once
    alive_at: float | None = None  # the last sign of life: a list, a watch opening, an event, a renewal
    restarts: int = 0  # times the loop started over after an error (410s are `relists`)
    relists: int = 0  # times a 410 Gone sent the loop back to listing
    failures: int = 0  # failed attempts in a row: the backoff step
    expired: int = 0  # 410s in a row with no event between
    watch: OpenWatch | None = None


def is_stale(state: Collection, now: float, max_age_seconds: float) -> bool:
    """Never listed, or no sign of life for longer than `max_age_seconds`."""
    return not state.synced or state.alive_at is None or now - state.alive_at > max_age_seconds


# What the loop hears ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """A list request answered 200 with this body."""

    body: bytes
    at: float


@dataclass(frozen=True)
class WatchOpened:
    """A watch request answered 200; its lines follow."""

    at: float


@dataclass(frozen=True)
class Line:
    """One newline-terminated line of the open watch stream (one event, or garbage)."""

    data: bytes
    at: float


@dataclass(frozen=True)
class WatchEnded:
    """The server ended the open watch stream cleanly (its timeoutSeconds ran out, or it closed it)."""

    at: float


@dataclass(frozen=True)
class Failed:
    """A request failed, or the open stream broke; `status` when the API answered with an HTTP error."""

    cause: str
    at: float
    status: int | None = None


Happening = Listed | WatchOpened | Line | WatchEnded | Failed


# What the loop does -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    """The objects changed: hand `state.objects` to the consumer (once per read of the stream)."""


@dataclass(frozen=True)
class Proceed:
    """Nothing to publish: read on, or (after a list, an opening or a clean end) watch."""


@dataclass(frozen=True)
class Retry:
    """Stop reading; wait `Backoff.delay(backoff_step)`, then list (`relist`) or watch again."""

    relist: bool
    backoff_step: int
    reason: str
    expired: bool = False  # a 410 Gone, not a failure
    listing: bool = False  # the failure was the list's, not the watch's


Action = Publish | Proceed | Retry


@dataclass(frozen=True)
class Step:
    state: Collection
    action: Action


PUBLISH, PROCEED = Publish(), Proceed()


def reduce(state: Collection, happening: Happening) -> Step:
    """The state after `happening`, and what the loop does next."""
    match happening:
        case Listed(body=body, at=at):
            return _listed(state, body, at)
        case WatchOpened(at=at):
            watch = OpenWatch(opened_at=at, failures_before=state.failures)
            return Step(replace(state, watch=watch, failures=0, alive_at=at), PROCEED)
        case Line(data=data, at=at):
            return _line(state, data, at)
        case WatchEnded(at=at):
            if _fruitless(state, at):
                elapsed = at - state.watch.opened_at if state.watch else 0.0
                return _trouble(state, f"watch ended after {elapsed:.2f}s without any event", at)
            # The server renewing the watch: proof of life, and no reason to wait.
            return Step(replace(state, watch=None, alive_at=at, expired=0), PROCEED)
        case Failed(cause=cause, at=at, status=status):
            if status == 410 and not state.must_list:
                return _expired(state, cause)
            return _trouble(state, cause, at)
        case _:
            assert_never(happening)


def _listed(state: Collection, body: bytes, at: float) -> Step:
    try:
        objects, resource_version = parse_list(body)
    except Unusable as error:
        return _trouble(state, str(error), at)
    listed = replace(
        state,
        objects=types.MappingProxyType(objects),
        resource_version=resource_version,
        must_list=False,
        synced=True,
        alive_at=at,
        failures=0,
        watch=None,
    )
    return Step(listed, PUBLISH)


def _line(state: Collection, data: bytes, at: float) -> Step:
    try:
        event = json.loads(data)
    except ValueError:
        return _trouble(state, f"watch line is not JSON: {data[:200]!r}", at)
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        return _trouble(state, f"watch event without an object: {data[:200]!r}", at)
    event_type, obj = event.get("type"), event["object"]
    if event_type == "ERROR":
        message = f"{obj.get('code')} {obj.get('reason')}: {obj.get('message')}"
        if obj.get("code") == 410:
            return _expired(state, message)
        return _trouble(state, f"ERROR event {message}", at)
    resource_version = _field(obj, "metadata", "resourceVersion")
    if not isinstance(resource_version, str):
        return _trouble(state, f"{event_type} event without metadata.resourceVersion", at)
    name = _field(obj, "metadata", "name")
    if event_type == "BOOKMARK":
        objects = state.objects
    elif not isinstance(name, str):
        return _trouble(state, f"{event_type} event without metadata.name", at)
    elif event_type in ("ADDED", "MODIFIED"):
        # Copy on write: the mapping behind a published snapshot is never touched again.
        objects = types.MappingProxyType({**state.objects, name: obj})
    elif event_type == "DELETED":
        remaining = dict(state.objects)
        remaining.pop(name, None)
        objects = types.MappingProxyType(remaining)
    else:
        return _trouble(state, f"unknown watch event type {event_type!r}", at)
    watch = replace(state.watch, events=state.watch.events + 1) if state.watch else None
    after = replace(
        state, objects=objects, resource_version=resource_version, alive_at=at, expired=0, watch=watch
    )
    return Step(after, PROCEED if event_type == "BOOKMARK" else PUBLISH)


def _expired(state: Collection, message: str) -> Step:
    # The first 410 is routine (history compacted while we were away): relist at once. Only a 410 right
    # after a relist, with no event in between, calls for patience. Failures before it do not count: the
    # API has just answered, so an outage must not add a second wait here.
    expired = state.expired + 1
    after = replace(state, must_list=True, relists=state.relists + 1, expired=expired, watch=None)
    return Step(after, Retry(relist=True, backoff_step=expired - 1, reason=message, expired=True))


def _trouble(state: Collection, cause: str, at: float) -> Step:
    base = state.watch.failures_before if _fruitless(state, at) and state.watch else state.failures
    failures = base + 1
    after = replace(state, restarts=state.restarts + 1, failures=failures, watch=None)
    retry = Retry(relist=state.must_list, backoff_step=failures, reason=cause, listing=state.must_list)
    return Step(after, retry)


def _fruitless(state: Collection, at: float) -> bool:
    """The open watch gave no event and lasted too short a time to count as established."""
    watch = state.watch
    return watch is not None and watch.events == 0 and at - watch.opened_at < MIN_HEALTHY_WATCH_SECONDS


class Unusable(Exception):
    """The API answered with something we cannot apply (a malformed list)."""


def parse_list(body: bytes) -> tuple[dict[str, WireObject], str]:
    """The objects by name and the resourceVersion of a list response; raises Unusable."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise Unusable(f"list response is not JSON ({error})") from error
    if not isinstance(document, dict):
        raise Unusable("list response is not a JSON object")
    resource_version = _field(document, "metadata", "resourceVersion")
    items = document.get("items", [])
    items = [] if items is None else items  # the API writes `"items": null` for an empty list
    if not isinstance(resource_version, str) or not isinstance(items, list):
        raise Unusable("list response without metadata.resourceVersion or items")
    # The API server leaves kind and apiVersion off list items, yet puts them on watch objects (and
    # kubectl shows them); restoring them makes every object look the same however it arrived.
    item_type = {
        "apiVersion": document.get("apiVersion"),
        "kind": str(document.get("kind", "")).removesuffix("List"),
    }
    objects: dict[str, WireObject] = {}
    for item in items:
        name = _field(item, "metadata", "name")
        if not isinstance(name, str):
            raise Unusable("list item without metadata.name")
        objects[name] = item_type | item
    return objects, resource_version


def _field(obj: object, *path: str) -> object:
    """obj[path[0]][path[1]]..., or None where the wire data has no such field."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
