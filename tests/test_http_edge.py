"""Tests for webhook.adapters.http.edge over real TLS: the body cap derived from the apiserver's limits, the
budget of pending body bytes, JSON that Python decodes but no apiserver sends, and clients that hang up.

Every bad body gets a typed JSON error (or a proper review answer), never a 500 or a logged traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.builders import host_path, review_for, tweak, wrap
from tests.pki import HOST, Pki
from tests.serving import (
    ACL_POD,
    JSON,
    WRITES_USR,
    Running,
    Served,
    assert_admission_review,
    post,
    running,
    sample,
    service_for,
)
from webhook.adapters.http import edge

MiB = 1024 * 1024
CONTROLLER_RUNTIME_CAP = 7 * MiB


def as_the_apiserver_writes_it(review: dict[str, Any]) -> bytes:
    """JSON as Go's encoding/json writes it: `&`, `<`, `>` escaped as \\u0026, \\u003c, \\u003e."""
    text = json.dumps(review, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").encode()


def agent_daemonset(padding: str, image: str = "agent:1") -> dict[str, Any]:
    """A DaemonSet whose pods write the host's /usr/local/bin, with `padding` as an env var value."""
    ds = wrap(tweak(WRITES_USR), "DaemonSet")
    container = ds["spec"]["template"]["spec"]["containers"][0]
    container["image"] = image
    container["env"] = [{"name": "PADDING", "value": padding}]
    return ds


def update_review(new: dict[str, Any], old: dict[str, Any], uid: str) -> dict[str, Any]:
    review = review_for(new, operation="UPDATE", uid=uid)
    review["request"]["oldObject"] = old
    return review


async def post_raw(r: Running, endpoint: str, body: bytes, uid: str) -> dict[str, Any]:
    answer = await r.client.post(f"/{endpoint}", content=body, headers=JSON)
    assert answer.status_code == 200, answer.text[:500]
    return assert_admission_review(answer.json(), uid)


# --- the body cap --------------------------------------------------------------------------------------


def test_the_cap_is_two_escaped_etcd_objects_and_an_envelope() -> None:
    assert edge.MAX_BODY_BYTES == 2 * 6 * (3 * MiB // 2) + MiB == 19 * MiB


async def test_a_6_mb_update_review_is_answered(app: Running) -> None:
    """An UPDATE that changes the template of a large DaemonSet: 3 MB object, 3 MB oldObject."""
    new = agent_daemonset("x" * 3_000_000, image="agent:2")
    old = agent_daemonset("x" * 3_000_000, image="agent:1")
    body = json.dumps(update_review(new, old, "update-6mb")).encode()
    assert 6_000_000 < len(body) < edge.MAX_BODY_BYTES
    response = await post_raw(app, "mutate", body, "update-6mb")
    assert response["auditAnnotations"]["decision"] == "steered"


@pytest.mark.parametrize(
    ("ampersands", "over_controller_runtime"),
    [(640 * 1024, True), (1_450_000, True)],
    ids=["640KiB-of-&", "1.45MB-of-&-near-etcds-limit"],
)
async def test_an_update_of_a_pod_full_of_ampersands_as_the_apiserver_escapes_it_is_answered(
    app: Running, ampersands: int, over_controller_runtime: bool
) -> None:
    """Each `&` arrives as the 6 bytes `\\u0026`, in the object and again in the old object: a pod etcd
    stores easily makes a review past controller-runtime's 7 MiB, and one near etcd's 1.5 MiB nearly
    reaches our cap."""
    new = agent_daemonset("&" * ampersands, image="agent:2")
    old = agent_daemonset("&" * ampersands, image="agent:1")
    body = as_the_apiserver_writes_it(update_review(new, old, "ampersands"))
    assert (len(body) > CONTROLLER_RUNTIME_CAP) is over_controller_runtime
    assert len(body) <= edge.MAX_BODY_BYTES
    response = await post_raw(app, "mutate", body, "ampersands")
    assert response["auditAnnotations"]["decision"] == "steered"
    denied = await post_raw(app, "validate", body, "ampersands")
    assert denied["allowed"] is False


# --- JSON that Python reads but no apiserver writes ----------------------------------------------------


def nested(depth: int, opening: str, closing: str) -> bytes:
    return (opening * depth + closing * depth).encode()


BAD_JSON = [
    # id, body, status, a phrase the error must hold
    ("arrays-100k-deep", nested(100_000, "[", "]"), 400, "nested too deep"),
    ("objects-100k-deep", ('{"a":' * 100_000 + "1" + "}" * 100_000).encode(), 400, "nested too deep"),
    ("unclosed-100k-deep", nested(100_000, "[", ""), 400, "nested too deep"),
    ("NaN", b'{"apiVersion": NaN}', 400, "NaN is not JSON"),
    ("Infinity", b'{"a": [Infinity]}', 400, "Infinity is not JSON"),
    ("-Infinity", b'{"a": -Infinity}', 400, "-Infinity is not JSON"),
    ("values-bomb", b"[" + b",".join([b"{}"] * (edge.MAX_JSON_VALUES + 1)) + b"]", 413, "values, over"),
    ("huge-uid", json.dumps(review_for(tweak(), uid="u" * 1_000_000)).encode(), 400, "uid of 1000000"),
]


@pytest.mark.parametrize(
    ("body", "status", "phrase"), [c[1:] for c in BAD_JSON], ids=[c[0] for c in BAD_JSON]
)
async def test_json_no_apiserver_writes_is_a_typed_error_not_a_500(
    app: Running, body: bytes, status: int, phrase: str
) -> None:
    answer = await app.client.post("/validate", content=body, headers=JSON)
    assert answer.status_code == status, answer.text[:300]
    error = answer.json()
    assert phrase in error["error"] and error["field"] in ("<body>", "request.uid") and error["fix"]


def duplicate_key(review: dict[str, Any], path: tuple[str, ...], first: Any) -> bytes:
    """`review` as JSON where the object at `path` first carries its last key with the value `first`;
    Python, like Go's encoding/json, keeps the last."""
    target: Any = review
    for key in path:
        target = target[key]
    key, value = list(target.items())[-1]
    text = json.dumps(review)
    decoy = json.dumps({key: first})[1:-1]
    tail = json.dumps({key: value})[1:-1]
    assert text.count(tail) == 1
    return text.replace(tail, f"{decoy}, {tail}").encode()


async def test_a_duplicate_key_is_read_as_go_reads_it_the_last_one_wins(app: Running) -> None:
    review = review_for(ACL_POD, uid="dup-0001")
    body = duplicate_key(review, ("request", "object", "spec"), {"kubernetes.azure.com/agentpool": "system"})
    assert json.loads(body) == review
    response = await post_raw(app, "validate", body, "dup-0001")
    assert response["allowed"] is False  # judged by the last nodeSelector: the Azure Container Linux pool


async def test_huge_strings_and_lone_surrogates_inside_the_object_get_a_proper_answer(app: Running) -> None:
    pod = copy.deepcopy(ACL_POD)
    pod["metadata"]["annotations"] = {"huge": "y" * 5_000_000, "\ud800": "\udfff"}
    pod["metadata"]["name"] = "n" * 100_000
    body = json.dumps(review_for(pod, uid="huge-0001")).encode()
    response = await post_raw(app, "validate", body, "huge-0001")
    assert response["allowed"] is False
    assert len(response["status"]["message"]) <= 1500


# --- the budget of pending body bytes ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_connection(served: Served) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(
        HOST, served.port, ssl=served.pki.client_context(), server_hostname=HOST
    )
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def request_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines if line)
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout=10)
    return int(status_line.split()[1]), headers, body


async def metric(r: Running, name: str, **labels: str) -> float:
    value = sample((await r.client.get("/metrics")).text, name, **labels)
    return value if value is not None else 0.0


async def until(probe: Callable[[], Awaitable[bool]], message: str, timeout: float = 10) -> None:
    """Poll the async `probe` until it is true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.01)


PENDING = "immutable_os_webhook_pending_body_bytes"


async def test_bodies_past_the_shared_budget_are_refused_503_while_small_reviews_pass(pki: Pki) -> None:
    """A slow upload holds most of a 1 MiB budget: a second large body is refused with 503 and
    Retry-After, a review under the free allowance is answered, and once the slow upload is in and
    answered its bytes are free again."""
    limits = edge.Limits(max_pending_body_bytes=1 * MiB, free_bytes_per_body=64 * 1024)
    big = review_for(agent_daemonset("x" * 900_000), uid="slow-upload")
    body = json.dumps(big).encode()
    large = json.dumps(review_for(agent_daemonset("y" * 400_000))).encode()
    async with running(service_for(limits=limits), pki) as r, raw_connection(r.served) as (reader, writer):
        writer.write(request_head("/mutate", len(body)) + body[:-1000])
        await writer.drain()
        await until(lambda: _at_least(r, 800_000), "the slow upload's bytes are not held")
        second = await r.client.post("/mutate", content=large, headers=JSON)
        small = await post(r, "validate", review_for(ACL_POD, uid="small"))
        writer.write(body[-1000:])
        await writer.drain()
        status, _, answer = await read_response(reader)
        await until(lambda: _at_most(r, 0), "the slow upload's bytes are still held")
        third = await r.client.post("/mutate", content=large, headers=JSON)
        busy = await metric(r, "immutable_os_webhook_bad_requests_total", reason="busy")
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert second.json()["field"] == "<body>" and "in flight" in second.json()["error"]
    assert small["allowed"] is False
    assert status == 200 and assert_admission_review(json.loads(answer), "slow-upload")["allowed"] is True
    assert third.status_code == 200
    assert busy == 1


async def _at_least(r: Running, value: float) -> bool:
    return await metric(r, PENDING) >= value


async def _at_most(r: Running, value: float) -> bool:
    return await metric(r, PENDING) <= value


# --- clients that hang up ------------------------------------------------------------------------------


def loud_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_client_hanging_up_mid_body_is_counted_not_logged_as_an_error(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(service_for(), pki) as r:
        async with raw_connection(r.served) as (_, writer):
            writer.write(request_head("/validate", 10_000) + b'{"apiVersion": ')
            await writer.drain()
            await until(lambda: _in_flight(r, 1), "the request never reached the service")
        await until(lambda: _in_flight(r, 0), "the service still waits for the body")
        hangups = await metric(r, "immutable_os_webhook_client_hangups_total")
        assert (await r.client.get("/healthz")).status_code == 200
    assert hangups == 1
    assert loud_records(caplog) == []
    assert any("hung up" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


async def test_a_client_hanging_up_before_its_answer_is_not_logged_as_an_error(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = json.dumps(review_for(tweak(host_path("/var/log")), uid="gone-0001")).encode()
    async with running(service_for(), pki) as r:
        for _ in range(20):  # some reach the service before the close, some after: neither is an error
            async with raw_connection(r.served) as (_, writer):
                writer.write(request_head("/validate", len(body)) + body)
                await writer.drain()
        await until(lambda: _in_flight(r, 0), "a review is still in flight")
        assert (await r.client.get("/healthz")).status_code == 200
    assert loud_records(caplog) == []


async def _in_flight(r: Running, value: float) -> bool:
    return await metric(r, "immutable_os_webhook_reviews_in_flight") == value
