"""Tests for webhook.adapters.http.serve: `python -m webhook serve` through SIGTERM, as the apiserver's Go
client sees it. The drain answers every request that reaches it, the last one on each connection with
`Connection: close`, closes no waiting connection at once, and exits 0 when they are gone or at the drain
deadline.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.builders import review_for
from tests.pki import HOST, Pki
from tests.serving import ACL_POD, Process
from webhook.cli import main

KEPT_ALIVE = 4
REQUESTS_BEFORE_SIGTERM = 20
MAX_REQUESTS_PER_CONNECTION = 500


@pytest.fixture
def serve_process(request: pytest.FixtureRequest, pki: Pki) -> Iterator[Process]:
    """A serve process with the flags of the test's `flags` mark; its readiness client closed, so the
    connections a test opens are all it has."""
    marker = request.node.get_closest_marker("flags")
    proc = Process(pki, "--example-nodes", *(marker.args if marker else ()))
    proc.client.close()
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
        proc.proc.wait(timeout=5)
        proc.reader.join(timeout=5)


def connect(proc: Process, pki: Pki) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(HOST, proc.port, context=pki.client_context(), timeout=10)


def review_body(uid: str) -> bytes:
    return json.dumps(review_for(ACL_POD, uid=uid)).encode()


def ask(conn: http.client.HTTPSConnection, uid: str) -> tuple[int, str | None, dict[str, Any]]:
    conn.request("POST", "/validate", body=review_body(uid), headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    return answer.status, answer.getheader("connection"), json.loads(answer.read())


def exit_code_within(proc: Process, seconds: float) -> int:
    """The process's exit code; fails if it is still running after `seconds` (a deadline)."""
    return proc.proc.wait(timeout=seconds)


def drained(proc: Process) -> dict[str, Any]:
    lines = proc.log_lines(lambda entry: entry.get("msg") == "drained", timeout=10)
    return next(entry for entry in lines if entry.get("msg") == "drained")


@dataclass
class Stream:
    """One kept-alive connection's answers: (sent after SIGTERM?, status, Connection header, uid echoed)."""

    answers: list[tuple[bool, int, str | None, bool]] = field(default_factory=list)
    failure: str = ""


@pytest.mark.flags("--drain-seconds", "10")
def test_kept_alive_clients_get_every_request_answered_through_sigterm(
    pki: Pki, serve_process: Process
) -> None:
    """Four kept-alive connections send reviews back to back; SIGTERM comes in the middle. Every request
    is answered 200 (none meets a closed connection); the first answer that says `Connection: close` is
    each connection's last; the process exits 0 once they are gone, well before the deadline."""
    streams = [Stream() for _ in range(KEPT_ALIVE)]
    signalled = threading.Event()
    sent = threading.Semaphore(0)

    def client(index: int) -> None:
        stream, conn = streams[index], connect(serve_process, pki)
        try:
            for n in range(MAX_REQUESTS_PER_CONNECTION):
                after = signalled.is_set()
                uid = f"stream-{index}-{n}"
                status, connection, payload = ask(conn, uid)
                stream.answers.append((after, status, connection, payload["response"]["uid"] == uid))
                sent.release()
                if connection == "close":
                    return
            stream.failure = f"no Connection: close in {MAX_REQUESTS_PER_CONNECTION} answers"
        except (OSError, http.client.HTTPException) as error:  # a reset, an EOF, a refused request
            stream.failure = repr(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(KEPT_ALIVE)]
    for thread in threads:
        thread.start()
    for _ in range(REQUESTS_BEFORE_SIGTERM):
        assert sent.acquire(timeout=10), "the clients stopped before SIGTERM"
    signalled.set()
    serve_process.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=20)
    assert [s.failure for s in streams] == [""] * KEPT_ALIVE
    for stream in streams:
        *before_last, last = stream.answers
        assert all(status == 200 and echoed for _, status, _, echoed in stream.answers)
        assert last[0] is True and last[2] == "close"
        assert [connection for _, _, connection, _ in before_last] == [None] * len(before_last)
    assert sum(1 for s in streams for answer in s.answers if answer[0]) >= KEPT_ALIVE
    assert exit_code_within(serve_process, 10) == 0
    assert drained(serve_process)["cut"] == drained(serve_process)["idle_closed"] == 0


@pytest.mark.flags("--drain-seconds", "10")
def test_a_waiting_connection_is_not_closed_at_sigterm_and_its_next_request_is_answered(
    pki: Pki, serve_process: Process
) -> None:
    conn = connect(serve_process, pki)
    try:
        assert ask(conn, "idle-0001")[:2] == (200, None)
        serve_process.proc.send_signal(signal.SIGTERM)
        lines = serve_process.log_lines(lambda entry: entry.get("msg") == "draining")
        assert any(entry.get("msg") == "draining" and entry["connections"] == 1 for entry in lines)
        time.sleep(0.5)  # idle through the drain's start: the connection must still be there after it
        status, connection, payload = ask(conn, "idle-0002")
    finally:
        conn.close()
    assert (status, connection, payload["response"]["uid"]) == (200, "close", "idle-0002")
    assert exit_code_within(serve_process, 10) == 0
    assert drained(serve_process)["cut"] == drained(serve_process)["idle_closed"] == 0


@pytest.mark.flags("--drain-seconds", "1")
def test_the_drain_ends_at_its_deadline_and_still_exits_0(pki: Pki, serve_process: Process) -> None:
    """Connections left unused keep the drain waiting. At the deadline an idle one (answered before) is
    closed at once, and one that never sent a request is cut after the last call."""
    idle, fresh = (
        connect(serve_process, pki),
        socket.create_connection((HOST, serve_process.port), timeout=10),
    )
    try:
        assert ask(idle, "idle-0003")[:2] == (200, None)
        with pki.client_context().wrap_socket(fresh, server_hostname=HOST):
            serve_process.proc.send_signal(signal.SIGTERM)
            assert exit_code_within(serve_process, 10) == 0
    finally:
        idle.close()
    assert {k: drained(serve_process)[k] for k in ("idle_closed", "cut")} == {"idle_closed": 1, "cut": 1}


def test_sigterm_finishes_the_request_in_flight_serves_newcomers_then_exits_0_and_refuses(pki: Pki) -> None:
    """A request in flight at SIGTERM is answered (with close); a client that connects during the drain
    is answered too, not refused; once both are gone the process exits 0 and the port refuses."""
    proc = Process(pki, "--example-nodes")
    proc.client.close()
    try:
        body = review_body("in-flight-0001")
        conn = connect(proc, pki)
        conn.putrequest("POST", "/validate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body[:100])  # the headers and a first piece: the request is in flight
        lines = proc.log_lines(lambda entry: entry.get("msg") == "serving")
        assert any(entry.get("msg") == "serving" for entry in lines)
        time.sleep(0.2)
        proc.proc.send_signal(signal.SIGTERM)
        lines = proc.log_lines(lambda entry: entry.get("msg") == "draining")
        assert any(entry.get("msg") == "draining" for entry in lines)
        newcomer = connect(proc, pki)
        status, connection, payload = ask(newcomer, "newcomer-0001")
        newcomer.close()
        assert (status, connection, payload["response"]["uid"]) == (200, "close", "newcomer-0001")
        assert proc.proc.poll() is None, "exited with a request in flight"
        conn.send(body[100:])
        answer = conn.getresponse()
        payload = json.loads(answer.read())
        conn.close()
        assert answer.status == 200 and answer.getheader("connection") == "close"
        assert payload["response"]["uid"] == "in-flight-0001" and payload["response"]["allowed"] is False
        assert exit_code_within(proc, 10) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, proc.port), timeout=1)
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
        proc.proc.wait(timeout=5)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--drain-seconds", "0", "not a positive number of seconds"),
     ("--drain-seconds", "nan", "not a positive number of seconds"),
     ("--drain-seconds", "inf", "not a positive number of seconds"),
     ("--max-connections", "0", "not a positive whole number"),
     ("--max-connections", "-5", "not a positive whole number")],
    ids=["drain-zero", "drain-nan", "drain-inf", "cap-zero", "cap-negative"],
)  # fmt: skip
def test_serve_refuses_a_drain_or_a_cap_that_is_not_positive(
    pki: Pki, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--example-nodes", "--cert-file", str(pki.cert_path), "--key-file", str(pki.key_path),
              f"{flag}={value}"])  # fmt: skip
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert flag in err and message in err, err
