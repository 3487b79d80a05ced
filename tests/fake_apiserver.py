"""A scriptable fake of the Kubernetes API's list and watch endpoints for nodes and namespaces.

It serves real HTTP on 127.0.0.1 so the real `kubernetes` client is tested, not a mock of it; tests
push events, drop or end watch streams, make watches or lists answer 410, 500 or ERROR events, and take
the whole server down and back up on the same port (an apiserver outage).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

# How a watch (or list) request may be scripted to fail instead of being served.
Answer = Literal["http-410", "http-500", "event-410", "event-500", "html-200"]
# How the server answers a watch from a resourceVersion older than the compacted history.
GoneForm = Literal["http", "event"]

# Every blocking wait in the fake polls this often, so nothing waits on a peer forever.
_POLL_SECONDS = 0.02


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_REASONS = {410: "Expired", 500: "InternalError"}


@dataclass
class _Stream:
    """One open watch connection: the handler thread drains `outbox`."""

    outbox: queue.Queue[bytes | Literal["drop", "end"]] = field(default_factory=queue.Queue)


class FakeResource:
    """One cluster-scoped collection (nodes or namespaces) with its event history and open watches."""

    def __init__(self, server: FakeApiServer, plural: str, kind: str) -> None:
        self._server = server
        self.plural = plural
        self.kind = kind
        self.objects: dict[str, dict[str, Any]] = {}
        # (resourceVersion, encoded event) for replaying a watch that starts from an older version.
        self._history: list[tuple[int, bytes]] = []
        self._compacted_rv = 0
        self._streams: list[_Stream] = []
        self._burst: list[bytes] | None = None
        self.gone_form: GoneForm = "event"
        self.watch_answers: deque[Answer] = deque()
        self.list_answers: deque[Answer] = deque()
        # Query parameters of every request received, in order, for assertions.
        self.watch_requests: list[dict[str, str]] = []
        self.list_requests: list[dict[str, str]] = []

    # State changes -----------------------------------------------------------------------------

    def put(self, name: str, labels: dict[str, str] | None = None, *, notify: bool = True) -> dict[str, Any]:
        """Create or replace an object; `notify=False` changes it without any watch event."""
        with self._server.lock:
            rv = self._server.next_rv()
            event_type = "MODIFIED" if name in self.objects else "ADDED"
            obj: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": self.kind,
                "metadata": {"name": name, "resourceVersion": str(rv), "labels": dict(labels or {})},
            }
            if self.kind == "Node":
                obj["status"] = {"nodeInfo": {"osImage": "Flatcar Container Linux by Kinvolk 4081.2.0"}}
            self.objects[name] = obj
            if notify:
                self._emit(rv, event_type, obj)
            return obj

    def delete(self, name: str, *, notify: bool = True) -> None:
        with self._server.lock:
            rv = self._server.next_rv()
            obj = dict(self.objects.pop(name))
            obj["metadata"] = dict(obj["metadata"], resourceVersion=str(rv))
            if notify:
                self._emit(rv, "DELETED", obj)

    def compact(self) -> None:
        """Forget history up to now, as etcd compaction does: older watches will be told 410 Gone."""
        with self._server.lock:
            self._compacted_rv = self._server.rv
            self._history.clear()

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Changes made inside reach open watches together, in one HTTP chunk."""
        with self._server.lock:
            self._burst = []
        try:
            yield
        finally:
            with self._server.lock:
                lines, self._burst = self._burst or [], None
                self._send(b"".join(lines))

    # Stream scripting --------------------------------------------------------------------------

    def bookmark(self) -> str:
        """Send a BOOKMARK at a fresh resourceVersion to every open watch; returns that version."""
        with self._server.lock:
            rv = self._server.next_rv()
            obj = {"kind": self.kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}
            self._send(_event("BOOKMARK", obj))
            return str(rv)

    def send_raw(self, data: bytes) -> None:
        """Send arbitrary bytes as one chunk on every open watch (for malformed-stream tests)."""
        with self._server.lock:
            self._send(data)

    def send_error(self, code: int) -> None:
        """Send an ERROR event with a Status of `code` on every open watch, then end those streams."""
        with self._server.lock:
            self._send(_event("ERROR", _status(code, _REASONS.get(code, "Unknown"), "scripted error")))
            self._close_streams("end")

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no terminating chunk)."""
        with self._server.lock:
            self._close_streams("drop")

    def end_watches(self) -> None:
        """End every open watch cleanly, as the server does when timeoutSeconds runs out."""
        with self._server.lock:
            self._close_streams("end")

    @property
    def open_watches(self) -> int:
        with self._server.lock:
            return len(self._streams)

    # Request handling (called from handler threads) ---------------------------------------------

    def list_body(self) -> bytes:
        with self._server.lock:
            return json.dumps(
                {
                    "kind": f"{self.kind}List",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self._server.rv)},
                    # Like the real API server: list items carry no kind or apiVersion of their own.
                    "items": [
                        {
                            key: value
                            for key, value in self.objects[name].items()
                            if key not in ("kind", "apiVersion")
                        }
                        for name in sorted(self.objects)
                    ],
                }
            ).encode()

    def open_stream(self, since: str) -> _Stream | int | None:
        """Register a watch from `since`: the stream (with replayed history), an HTTP status, or None
        while the server is down."""
        with self._server.lock:
            if self._server.down:
                return None
            stream = _Stream()
            if since and int(since) < self._compacted_rv:
                return 410 if self.gone_form == "http" else _error_stream(410)
            for rv, line in self._history:
                if not since or rv > int(since):
                    stream.outbox.put(line)
            self._streams.append(stream)
            return stream

    def close_stream(self, stream: _Stream) -> None:
        with self._server.lock:
            if stream in self._streams:
                self._streams.remove(stream)

    def _emit(self, rv: int, event_type: str, obj: dict[str, Any]) -> None:
        line = _event(event_type, obj)
        self._history.append((rv, line))
        if self._burst is not None:
            self._burst.append(line)
        else:
            self._send(line)

    def _send(self, chunk: bytes) -> None:
        if chunk:
            for stream in self._streams:
                stream.outbox.put(chunk)

    def _close_streams(self, how: Literal["drop", "end"]) -> None:
        for stream in self._streams:
            stream.outbox.put(how)
        self._streams.clear()


def _event(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"


def _error_stream(code: int) -> _Stream:
    """A watch stream that carries one ERROR event and ends, as the API server answers expired watches."""
    stream = _Stream()
    stream.outbox.put(_event("ERROR", _status(code, _REASONS.get(code, "Unknown"), "scripted error")))
    stream.outbox.put("end")
    return stream


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets its connection (a mirror cutting its watch on stop) is no fault of the fake.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeApiServer:
    """The fake API server: `nodes` and `namespaces` collections behind one loopback port."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rv = 100
        self.stopping = threading.Event()
        # While down, nothing listens on the port, and a request already accepted gets no answer.
        self.down = False
        self.nodes = FakeResource(self, "nodes", "Node")
        self.namespaces = FakeResource(self, "namespaces", "Namespace")
        self._httpd = self._listen(("127.0.0.1", 0))
        self._thread = self._serve()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def resource(self, plural: str) -> FakeResource | None:
        return {"nodes": self.nodes, "namespaces": self.namespaces}.get(plural)

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def go_down(self) -> None:
        """An outage: stop listening (clients get connection refused) and cut every open watch."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)
        with self.lock:
            self.down = True
            self.nodes.drop_watches()
            self.namespaces.drop_watches()

    def come_back(self) -> None:
        """Listen again on the same port, with the same objects and history (compact() first to model an
        apiserver whose fresh watch cache no longer has the clients' resourceVersions)."""
        with self.lock:
            self.down = False
        self._httpd = self._listen(self._httpd.server_address[:2])
        self._thread = self._serve()
        self._thread.start()

    def _listen(self, address: Any) -> ThreadingHTTPServer:
        return _QuietServer(address, _handler_for(self))

    def _serve(self) -> threading.Thread:
        return threading.Thread(target=self._httpd.serve_forever, args=(_POLL_SECONDS,), daemon=True)

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)


def _handler_for(server: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so that watch responses can be chunked, as the real API server's are.
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read state, not logs
            pass

        def do_GET(self) -> None:
            with server.lock:
                if server.down:
                    self.close_connection = True  # no answer at all, as from a process that has gone
                    return
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            resource = server.resource(parts[-1]) if parts[:2] == ["api", "v1"] and len(parts) == 3 else None
            if resource is None:
                self._send_json(404, _status(404, "NotFound", f"no such path {url.path}"))
                return
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            if query.get("watch") in ("true", "1"):
                self._watch(resource, query)
            else:
                self._list(resource, query)

        def _list(self, resource: FakeResource, query: dict[str, str]) -> None:
            with server.lock:
                resource.list_requests.append(query)
                answer = resource.list_answers.popleft() if resource.list_answers else None
            if answer == "html-200":
                # What a misconfigured proxy in front of the API server might answer.
                self._send_body(200, b"<html><body>Sign in</body></html>")
                return
            if answer is not None:
                code = int(answer[-3:])
                self._send_json(code, _status(code, _REASONS[code], "scripted failure"))
                return
            self._send_body(200, resource.list_body())

        def _watch(self, resource: FakeResource, query: dict[str, str]) -> None:
            with server.lock:
                resource.watch_requests.append(query)
                answer = resource.watch_answers.popleft() if resource.watch_answers else None
            if answer is not None and answer.startswith("http-"):
                code = int(answer[-3:])
                self._send_json(code, _status(code, _REASONS[code], "scripted failure"))
                return
            stream: _Stream | int | None
            if answer is not None:
                stream = _error_stream(int(answer[-3:]))
            else:
                stream = resource.open_stream(query.get("resourceVersion", ""))
            if stream is None:
                self.close_connection = True  # went down while this request was in flight
                return
            if isinstance(stream, int):
                self._send_json(stream, _status(stream, _REASONS[stream], "too old resource version"))
                return
            try:
                self._stream(stream, float(query.get("timeoutSeconds", "60")))
            finally:
                resource.close_stream(stream)

        def _stream(self, stream: _Stream, timeout_seconds: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            deadline = time.monotonic() + timeout_seconds
            while not server.stopping.is_set() and time.monotonic() < deadline:
                try:
                    item = stream.outbox.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if item == "drop":
                    # Leave without the terminating chunk; the server then closes the socket.
                    self.close_connection = True
                    return
                if item == "end":
                    break
                assert isinstance(item, bytes)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(item), item))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _send_json(self, code: int, body: dict[str, Any]) -> None:
            self._send_body(code, json.dumps(body).encode())

        def _send_body(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
