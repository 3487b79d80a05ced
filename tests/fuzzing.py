"""Seeded, structure-aware fuzzing of the HTTP edge, shared by tests/test_http_fuzz.py and bench/fuzz.py.

Cases are real AdmissionReviews (the golden reviews of testdata/reviews, the workloads of testdata/workloads
wrapped as the apiserver wraps them, their pods as a controller makes them, UPDATEs with an old object),
each mutated once: a field deleted, retyped, enlarged, nested deep, made a huge string, a lone surrogate,
NaN or Infinity, a duplicate key; or the body itself truncated, emptied, mis-typed, over the cap; sent
whole, chunked, slowly (a byte at a time, bounded) or abandoned midway. Case `i` of seed `s` depends on
(s, i) alone: `case(s, i)` rebuilds one failing case by itself.

The contract each answer is held to (docs/reliability.md, "The HTTP edge"):
- never a 5xx, and the answer within 1 s of the request's last byte;
- a readable uid (the body is JSON, `request.uid` a non-empty string of at most 128 characters) with the
  envelope intact (only something inside `object` or `oldObject` changed) is answered 200 with an
  AdmissionReview that carries that uid: judged, or denied with code 400 naming the unreadable field;
- any other body gets either that, or a 4xx carrying the typed error `{"error", "field", "fix"}`; a body
  without a readable uid is never answered 200;
- a client that hangs up is owed no answer, and costs no error record in the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import itertools
import json
import random
import re
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from webhook.adapters.http.edge import MAX_BODY_BYTES
from webhook.adapters.http.service import MAX_UID_LENGTH
from webhook.core.workloads import POD_TEMPLATE_PATHS

REPO = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 1.0  # every answer within this of the request's last byte
GIVE_UP_SECONDS = 15.0  # past this an answer is counted missing
SENTINEL = "\x00fuzz\x00"  # a string no review holds; its JSON text is replaced by raw JSON
JsonPath = tuple[str | int, ...]


# --- the corpus ------------------------------------------------------------------------------------------


def _wrap(obj: dict[str, Any], operation: str, old: dict[str, Any] | None = None) -> dict[str, Any]:
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"]
    meta = obj.setdefault("metadata", {})
    meta["namespace"] = "default"  # kube-system is never judged: keep the corpus judged
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "", "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "operation": operation, "namespace": "default", "name": meta.get("name", ""),
            "userInfo": {"username": "system:serviceaccount:kube-system:deployment-controller",
                         "uid": "4b7a", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.title()}Options"},
        },
    }  # fmt: skip


def _template(obj: Mapping[str, Any]) -> Any:
    node: Any = obj
    for part in POD_TEMPLATE_PATHS[obj["kind"]]:
        node = node[part]
    return node


def _pod_of(workload: dict[str, Any], node: str) -> dict[str, Any]:
    """The workload's pod as its controller creates it: generateName, an owner, and a DaemonSet's node
    pinned through matchFields."""
    template = copy.deepcopy(_template(workload))
    name = workload["metadata"]["name"]
    meta = {**template.get("metadata", {}), "generateName": f"{name}-",
            "ownerReferences": [{"apiVersion": workload["apiVersion"], "kind": workload["kind"], "name": name,
                                 "uid": "5e1f", "controller": True, "blockOwnerDeletion": True}]}  # fmt: skip
    spec = template["spec"]
    if workload["kind"] == "DaemonSet":
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        spec.setdefault("affinity", {})["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _updated(obj: dict[str, Any]) -> dict[str, Any]:
    """An UPDATE that changes the first container's image (and, for a pod, its tolerations)."""
    new = copy.deepcopy(obj)
    spec = new["spec"] if new["kind"] == "Pod" else _template(new)["spec"]
    spec["containers"][0]["image"] = spec["containers"][0].get("image", "x") + "-next"
    if new["kind"] == "Pod":
        spec.setdefault("tolerations", []).append({"operator": "Exists"})
    return _wrap(new, "UPDATE", copy.deepcopy(obj))


@cache
def corpus() -> tuple[str, ...]:
    """Every base review as JSON text (decoded afresh for each case: nothing is shared between cases)."""
    reviews = [
        json.loads(p.read_text())["review"] for p in sorted((REPO / "testdata/reviews").glob("*.json"))
    ]
    nodes = yaml.safe_load((REPO / "webhook/data/example-nodes.yaml").read_text())["items"]
    names = [n["metadata"]["name"] for n in nodes]
    for path in sorted((REPO / "testdata/workloads").glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if not isinstance(doc, dict) or doc.get("kind") not in POD_TEMPLATE_PATHS:
                continue
            reviews.append(_wrap(copy.deepcopy(doc), "CREATE"))
            reviews.append(_updated(doc))
            if doc["kind"] != "Pod":
                reviews.append(_wrap(_pod_of(doc, names[i % len(names)]), "CREATE"))
    return tuple(json.dumps(r) for r in reviews)


@cache
def _paths(base: int) -> tuple[JsonPath, ...]:
    """Every value's path in base review `base`, the root excepted."""
    found: list[JsonPath] = []

    def walk(node: Any, at: JsonPath) -> None:
        if at:
            found.append(at)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*at, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*at, i))

    walk(json.loads(corpus()[base]), ())
    return tuple(found)


# The envelope: what the apiserver always sends and the edge needs to answer at all.
ENVELOPE: tuple[JsonPath, ...] = (
    ("apiVersion",), ("kind",), ("request",), ("request", "uid"), ("request", "kind"),
    ("request", "kind", "kind"), ("request", "operation"), ("request", "userInfo"),
    ("request", "userInfo", "groups"), ("request", "object"), ("request", "oldObject"),
    ("request", "namespace"), ("request", "subResource"), ("request", "dryRun"),
)  # fmt: skip


# --- cases -----------------------------------------------------------------------------------------------


class Expect(enum.Enum):
    REVIEW = "review"  # 200, an AdmissionReview with the request's uid
    ERROR = "error"  # a 4xx with the typed error
    EITHER = "either"  # one of those two
    NOTHING = "nothing"  # the client hangs up: no answer is read


class Delivery(enum.Enum):
    WHOLE = "whole"  # Content-Length, one write
    CHUNKED = "chunked"  # Transfer-Encoding: chunked, random chunk sizes
    SLOW = "slow"  # the first bytes one at a time, a few ms apart (bounded), then the rest
    HANGUP_BODY = "hangup-body"  # part of the body, then the connection is cut
    HANGUP_ANSWER = "hangup-answer"  # the whole request, then the connection is cut before the answer
    OVER_CAP = "over-cap"  # a Content-Length over the cap and a few bytes; the answer is read at once


@dataclass(frozen=True)
class Case:
    seed: int
    index: int
    mutation: str  # what was done, e.g. "retype request.object.spec.volumes[0].hostPath -> list"
    endpoint: str
    body: bytes
    content_type: str | None
    delivery: Delivery
    expect: Expect
    uid: str | None  # the uid a 200 answer must carry; None: the body has no readable one
    chunks: tuple[int, ...] = ()  # chunk sizes for CHUNKED; prefix length for SLOW and HANGUP_BODY

    def describe(self) -> str:
        return (f"case(seed={self.seed}, index={self.index}) {self.endpoint} {self.delivery.value} "
                f"{self.mutation} [{len(self.body)} bytes]")  # fmt: skip


def _dotted(path: JsonPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _get(node: Any, path: JsonPath) -> Any:
    for part in path:
        node = node[part]
    return node


def _set(node: Any, path: JsonPath, value: Any) -> None:
    _get(node, path[:-1])[path[-1]] = value


def _delete(node: Any, path: JsonPath) -> None:
    del _get(node, path[:-1])[path[-1]]


RETYPES: tuple[Any, ...] = (None, True, False, 0, -1, 2**63, 1.5, -0.0, 1e308, "", "x", "0", "true", "null",
                            [], {}, [None], {"": None}, "\u0000", "a" * 300)  # fmt: skip
ODD_STRINGS = ("\ud800", "\udfff", "a\udc00b", "\ud83d", "\u0000", "\u2028\u2029", "\ufeff", "\U0001f600",
               "&<>" * 50, "\u202e/usr/local/bin", "..", "/", "//usr//local/", "/usr/../usr/lib",
               "C:\\Windows", "\t\n\r", "%00", "'; --", "${HOME}")  # fmt: skip
NON_FINITE = ("NaN", "Infinity", "-Infinity")
# Sizes of the huge strings, in MB of JSON: an UPDATE of a pod near etcd's 1.5 MiB is ~3 MB, one full of
# escaped `&` up to ~19 MB (the edge's cap).
HUGE_MB = (1, 2, 4, 6)


def _retype(rng: random.Random, value: Any) -> Any:
    choices = [c for c in RETYPES if type(c) is not type(value)]
    choice = rng.choice(choices)
    if choice == [None]:
        return [value]
    if choice == {"": None}:
        return {"x": value}
    return copy.deepcopy(choice)


def _enlarge(rng: random.Random, value: Any) -> Any:
    """The value grown, to at most ~512 KB of JSON (so a body stays far below the edge's value budget)."""
    text = len(json.dumps(value))
    times = max(2, min(rng.choice((10, 100, 1000, 10_000)), 512_000 // max(text, 1)))
    if isinstance(value, str):
        return (value or "x") * times
    if isinstance(value, list):
        return [copy.deepcopy(v) for v in (value or [None]) for _ in range(times)]
    if isinstance(value, dict):
        grown = dict(value)
        for i in range(min(times, 20_000)):
            grown[f"fuzz-{i}"] = "x" * rng.choice((0, 1, 50))
        return grown
    if isinstance(value, bool) or value is None:
        return [value] * times
    return value * 10**times if isinstance(value, int) and times < 300 else float("1e308") * 1.0


def _nested(rng: random.Random) -> str:
    depth = rng.choice((3, 50, 200, 5_000, 100_000))
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _with_duplicate(value: dict[str, Any], rng: random.Random) -> str:
    """The object's JSON with one key written twice: first a decoy value, then its own (the last wins)."""
    key = rng.choice(list(value))
    decoy = _retype(rng, value[key])
    return "{" + json.dumps(key) + ":" + json.dumps(decoy) + "," + json.dumps(value)[1:]


def _value_mutation(
    rng: random.Random, review: dict[str, Any], base: int, huge_mb: int
) -> tuple[str, str, JsonPath]:
    """Mutate one value of `review` in place (or mark it with SENTINEL); the name, the raw JSON to put
    in place of SENTINEL (or ""), and the path."""
    paths = _paths(base)
    path = rng.choice(ENVELOPE) if rng.random() < 0.1 else rng.choice(paths)
    try:
        value = _get(review, path)
    except (KeyError, IndexError, TypeError):
        return "none (path absent)", "", path
    kind = rng.choices(
        ("delete", "retype", "enlarge", "nest", "huge", "odd", "nonfinite", "duplicate", "number"),
        weights=(20, 30, 8, 5, 1, 12, 4, 8, 4),
    )[0]
    where = _dotted(path)
    if kind == "delete":
        _delete(review, path)
        return f"delete {where}", "", path
    if kind == "retype":
        new = _retype(rng, value)
        _set(review, path, new)
        return f"retype {where} -> {type(new).__name__}", "", path
    if kind == "enlarge":
        _set(review, path, _enlarge(rng, value))
        return f"enlarge {where}", "", path
    if kind == "nest":
        raw = _nested(rng)
        _set(review, path, SENTINEL)
        return f"nest {where} ({len(raw) // 2} deep)", raw, path
    if kind == "huge":
        char = rng.choice("x&<é\u2028")
        size = rng.choice([mb for mb in HUGE_MB if mb <= huge_mb]) * 1_000_000
        size //= 1 if char.isascii() else 6  # \u00e9 is 6 bytes of JSON
        _set(review, path, char * size)
        return f"huge string {where} ({size} chars)", "", path
    if kind == "odd":
        odd = rng.choice(ODD_STRINGS)
        if isinstance(value, dict) and value and rng.random() < 0.5:
            value[odd] = value.pop(rng.choice(list(value)))  # as a key
            return f"odd key in {where}: {odd!r}", "", path
        _set(review, path, odd)
        return f"odd string {where} = {odd!r}", "", path
    if kind == "nonfinite":
        _set(review, path, SENTINEL)
        raw = rng.choice(NON_FINITE)
        return f"{raw} at {where}", raw, path
    if kind == "duplicate" and isinstance(value, dict) and value:
        _set(review, path, SENTINEL)
        return f"duplicate key in {where}", _with_duplicate(value, rng), path
    number = rng.choice(("1e999", "-1e999", "1" * 5000, "0.0000000000000000000001", "-0", "1E+2", "0x10"))
    _set(review, path, SENTINEL)
    return f"number {number[:12]} at {where}", number, path


def _body_mutation(rng: random.Random, text: str) -> tuple[str, bytes]:
    kind = rng.choice(("truncate", "empty", "top-level", "bom", "bad-utf8", "trailing", "whitespace"))
    raw = text.encode()
    if kind == "truncate":
        cut = rng.randrange(len(raw))
        return f"truncated at byte {cut}", raw[:cut]
    if kind == "empty":
        return "empty body", b""
    if kind == "top-level":
        top = rng.choice(("[]", "null", "1", '"review"', "{}", "[" + text + "]", "true", '{"request": {}}'))
        return f"top-level {top[:10]}", top.encode()
    if kind == "bom":
        return "UTF-8 BOM first", b"\xef\xbb\xbf" + raw
    if kind == "bad-utf8":
        at = raw.find(b'"', rng.randrange(len(raw)))
        at = at if at > 0 else 1
        return f"invalid UTF-8 at byte {at}", raw[: at + 1] + b"\xff\xfe" + raw[at + 1 :]
    if kind == "trailing":
        return "trailing garbage", raw + rng.choice((b"}", b" x", b"\x00", b"{}"))
    return "whitespace padded", b" \n\t" * rng.randrange(1, 1000) + raw + b"\r\n" * rng.randrange(1, 100)


def readable_uid(body: bytes) -> str | None:
    """The request's uid if the body is JSON a review could be read from; None otherwise."""

    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        decoded = json.loads(body, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    request = decoded.get("request") if isinstance(decoded, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) and 0 < len(uid) <= MAX_UID_LENGTH else None


def case(seed: int, index: int, huge_mb: int = max(HUGE_MB)) -> Case:
    """Case `index` of `seed`; huge strings at most `huge_mb` MB of JSON."""
    rng = random.Random(f"{seed}:{index}")
    base = rng.randrange(len(corpus()))
    text = corpus()[base]
    review = json.loads(text)
    uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    review["request"]["uid"] = uid
    endpoint = rng.choice(("mutate", "validate"))
    content_type: str | None = "application/json"
    roll = rng.random()
    intact = True
    if roll < 0.02:
        content_type = rng.choice((None, "text/plain", "application/json-patch+json", "application/x-www-form-urlencoded",
                                   "application/yaml", "application/jsonx", ""))  # fmt: skip
        mutation, body = f"content type {content_type!r}", json.dumps(review).encode()
        intact = False
    elif roll < 0.03:
        mutation, body = "content type with parameters", json.dumps(review).encode()
        content_type = rng.choice(
            ("application/json; charset=utf-8", "Application/JSON", "application/json;v=1")
        )
    elif roll < 0.10:
        mutation, body = _body_mutation(rng, json.dumps(review))
        intact = False
    elif roll < 0.13:
        mutation, body = "unmutated", json.dumps(review).encode()
    else:
        mutation, raw, path = _value_mutation(rng, review, base, huge_mb)
        text = json.dumps(review)
        if raw:
            text = text.replace(json.dumps(SENTINEL), raw, 1)
        body = text.encode()
        intact = len(path) >= 3 and path[:2] in (("request", "object"), ("request", "oldObject"))
    delivery = rng.choices(list(Delivery), weights=(88, 5, 1, 2, 2, 0.5 if intact else 2))[0]
    chunks: tuple[int, ...] = ()
    if delivery is Delivery.CHUNKED:
        sizes, left = [], len(body)
        while left > 0:
            sizes.append(min(left, rng.choice((1, 7, 100, 4096, 65536, 1 << 20))))
            left -= sizes[-1]
        chunks = tuple(sizes)
    elif delivery in (Delivery.SLOW, Delivery.HANGUP_BODY):
        chunks = (min(len(body), rng.randrange(1, 200)),)
    found = readable_uid(body)
    if delivery in (Delivery.HANGUP_BODY, Delivery.HANGUP_ANSWER):
        expect = Expect.NOTHING
    elif found is None or delivery is Delivery.OVER_CAP or not _json_type(content_type):
        expect = Expect.ERROR
    elif intact:
        expect = Expect.REVIEW
    else:
        expect = Expect.EITHER
    return Case(seed, index, mutation, endpoint, body, content_type, delivery, expect, found, chunks)


def _json_type(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def cases(seed: int, count: int, start: int = 0, huge_mb: int = max(HUGE_MB)) -> Iterator[Case]:
    return (case(seed, i, huge_mb) for i in range(start, start + count))


# --- judging an answer -----------------------------------------------------------------------------------


def problem(c: Case, status: int, body: bytes) -> str:
    """What is wrong with this answer to `c`; "" if nothing."""
    if status >= 500:
        return f"HTTP {status}: {body[:200]!r}"
    if status == 200:
        if c.expect is Expect.ERROR:
            return f"answered 200 where a 4xx was owed: {body[:200]!r}"
        try:
            review = json.loads(body)
            response = review["response"]
        except (ValueError, KeyError, TypeError):
            return f"200 that is no AdmissionReview: {body[:200]!r}"
        if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
            return f"200 with the wrong envelope: {body[:200]!r}"
        if response.get("uid") != c.uid:
            return f"wrong uid: sent {c.uid!r}, answered {response.get('uid')!r}"
        if not isinstance(response.get("allowed"), bool):
            return f"allowed is not a boolean: {body[:200]!r}"
        if not response["allowed"] and not (response.get("status") or {}).get("message"):
            return f"a denial without a message: {body[:200]!r}"
        return ""
    if 400 <= status < 500:
        if c.expect is Expect.REVIEW:
            return f"HTTP {status} to an intact review: {body[:300]!r}"
        try:
            error = json.loads(body)
        except ValueError:
            return f"HTTP {status} without a JSON error: {body[:200]!r}"
        if not (isinstance(error, dict) and error.get("error") and error.get("fix") and "field" in error):
            return f"HTTP {status} without a typed error: {body[:200]!r}"
        return ""
    return f"HTTP {status}"


# --- driving a server ------------------------------------------------------------------------------------


@dataclass
class Report:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0  # 5xx
    wrong_uid: int = 0
    late: int = 0  # answered after DEADLINE_SECONDS
    missing: int = 0  # no answer where one was owed (a connection closed, or GIVE_UP_SECONDS passed)
    failures: list[str] = field(default_factory=list)  # every problem, described
    latencies: list[float] = field(default_factory=list)

    def add(self, c: Case, status: int | None, body: bytes, seconds: float, trouble: str = "") -> None:
        self.cases += 1
        self.expected[c.expect.value] += 1
        if c.expect is Expect.NOTHING:
            return
        if status is None:
            self.missing += 1
            self.failures.append(f"{c.describe()}: no answer ({trouble})")
            return
        self.statuses[status] += 1
        self.latencies.append(seconds)
        found = problem(c, status, body)
        if status >= 500:
            self.server_errors += 1
        if found.startswith("wrong uid"):
            self.wrong_uid += 1
        if seconds > DEADLINE_SECONDS:
            self.late += 1
            found = found or f"answered in {seconds:.3f} s"
        if found:
            self.failures.append(f"{c.describe()}: {found}")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def abort(self) -> None:
        transport = self.writer.transport
        if transport is not None:
            transport.abort()


def _head(c: Case, length: int | None) -> bytes:
    lines = [f"POST /{c.endpoint} HTTP/1.1", "Host: 127.0.0.1"]
    if c.content_type is not None:
        lines.append(f"Content-Type: {c.content_type}")
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines if ": " in line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def _send(conn: _Connection, c: Case) -> None:
    writer = conn.writer
    if c.delivery is Delivery.CHUNKED:
        writer.write(_head(c, None))
        at = 0
        for size in c.chunks:
            writer.write(f"{size:x}\r\n".encode() + c.body[at : at + size] + b"\r\n")
            at += size
        writer.write(b"0\r\n\r\n")
    elif c.delivery is Delivery.SLOW:
        writer.write(_head(c, len(c.body)))
        for byte in c.body[: c.chunks[0]]:  # bounded: under 200 bytes, 2 ms apart
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.002)
        writer.write(c.body[c.chunks[0] :])
    elif c.delivery is Delivery.HANGUP_BODY:
        writer.write(_head(c, len(c.body) + 1) + c.body[: c.chunks[0]])
    elif c.delivery is Delivery.OVER_CAP:
        writer.write(_head(c, MAX_BODY_BYTES + 1) + c.body[:100])
    else:
        writer.write(_head(c, len(c.body)) + c.body)
    await writer.drain()


async def drive(
    host: str,
    port: int,
    context: ssl.SSLContext,
    work: Iterable[Case],
    *,
    workers: int = 4,
    batch: int = 64,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Send every case over `workers` keep-alive TLS connections; each answer judged as it comes.

    Cases are built `batch` at a time before any of them is sent: building one (megabytes of JSON at
    times) on this event loop while answers are due would count the client's time as the server's."""
    report = Report()
    cases = iter(work)
    conns: list[_Connection | None] = [None] * workers

    async def connect() -> _Connection:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host, limit=MAX_BODY_BYTES
        )
        return _Connection(reader, writer)

    async def worker(slot: int, queue: Iterator[Case]) -> None:
        conn = conns[slot]
        for c in queue:
            if conn is None:
                conn = await connect()
            status: int | None = None
            body, trouble, started = b"", "", time.perf_counter()
            try:
                await _send(conn, c)
                started = time.perf_counter()
                if c.expect is Expect.NOTHING:
                    conn.abort()
                    conn = None
                else:
                    status, headers, body = await asyncio.wait_for(_read_answer(conn.reader), GIVE_UP_SECONDS)
                    if headers.get("connection", "").lower() == "close" or c.delivery is Delivery.OVER_CAP:
                        conn.abort()
                        conn = None
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                TimeoutError,
                ValueError,
            ) as err:
                trouble = f"{type(err).__name__}: {err}"[:200]
                if conn is not None:
                    conn.abort()
                conn = None
            report.add(c, status, body, time.perf_counter() - started, trouble)
            if progress is not None:
                progress(report)
        conns[slot] = conn

    while built := list(itertools.islice(cases, batch)):
        queue = iter(built)
        await asyncio.gather(*(worker(slot, queue) for slot in range(workers)))
    for conn in conns:
        if conn is not None:
            conn.writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await conn.writer.wait_closed()
    return report


def warm_up(seed: int, fuzzed: int = 0) -> Iterator[Case]:
    """Every base review unmutated, to both endpoints, then `fuzzed` cases of another seed: what the
    server holds once it has seen them all. Its bounded memos (webhook/core/config.py, `Memo`) fill
    over the first ~2,000 fuzzed reviews, ~10 MB; the RSS a run must return to is measured after."""
    yield from cases(seed + 1, fuzzed, huge_mb=2)
    for i, text in enumerate(corpus()):
        review = json.loads(text)
        uid = f"warm-{seed}-{i}"
        review["request"]["uid"] = uid
        body = json.dumps(review).encode()
        for endpoint in ("mutate", "validate"):
            yield Case(seed, -1 - i, "unmutated", endpoint, body, "application/json", Delivery.WHOLE,
                       Expect.REVIEW, uid)  # fmt: skip


# --- the server's side ------------------------------------------------------------------------------------


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = {k: re.search(rf"^{k}:\s+(\d+) kB", status, re.M) for k in ("VmRSS", "VmHWM")}
    return {k: int(m.group(1)) * 1024 for k, m in found.items() if m}


def loud_lines(stdout: Iterable[str], stderr: Iterable[str]) -> list[str]:
    """Log records at error level or above, and tracebacks, from a serve process's output."""
    loud = []
    for line in stdout:
        try:
            entry = json.loads(line)
        except ValueError:
            loud.append(f"not a JSON log line: {line[:300]}")
            continue
        if entry.get("level") in ("error", "critical") or "exception" in entry:
            loud.append(line[:500])
    loud += [f"stderr: {line[:300]}" for line in stderr if line.strip()]
    return loud
