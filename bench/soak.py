"""Soak: `python -m webhook serve` answering a steady rate of mixed reviews for minutes, its RSS and open
file descriptors sampled every few seconds; are they flat?

Mix (each with a fresh uid, half to /mutate, half to /validate): clean pods, host-access reviews (the
golden reviews that write /usr, read /var/log, a CNI DaemonSet, kubectl debug on an immutable node), pod
UPDATEs that change tolerations, and large reviews (an UPDATE of a ~1 MB DaemonSet: object and old object).
Open loop: reviews are sent on a fixed schedule over `--connections` keep-alive connections, so a slow
answer does not slow the load down. Every answer must be a 200 AdmissionReview with its request's uid,
within 1 s.

Figures: reviews sent, failures, late answers, p50/p99/max latency, and for RSS and open file descriptors
the first sample (taken after `--settle` seconds of load), the last, the peak, and the drift from first to
last in %. Goal: flat within 5 %.

Run: `.venv/bin/python bench/soak.py [--minutes 10] [--rate 20] [--connections 4] [--sample-seconds 5]
[--json FILE]` (needs the `bench` extra: `pip install -e '.[test,bench]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fuzzing
from tests.pki import HOST, Pki
from tests.serving import Process

REPO = Path(__file__).resolve().parents[1]
GOLDEN = ("clean-pod", "writes-usr-steered", "writes-usr-unconstrained", "reads-var-log", "cni-daemonset",
          "kubectl-debug-node-on-acl", "writes-usr-pinned-to-acl")  # fmt: skip


def mix() -> list[tuple[str, dict[str, Any]]]:
    """(kind, review) in the proportions they are sent: mostly small reviews, some UPDATEs, a large one."""
    golden = {n: json.loads((REPO / f"testdata/reviews/{n}.json").read_text())["review"] for n in GOLDEN}
    clean = [("clean", golden["clean-pod"])] * 6
    host = [("host-access", golden[n]) for n in GOLDEN[1:]]
    pod = golden["writes-usr-unconstrained"]
    update = copy.deepcopy(pod)
    update["request"]["operation"] = "UPDATE"
    update["request"]["oldObject"] = copy.deepcopy(pod["request"]["object"])
    update["request"]["object"]["spec"]["tolerations"] = [{"operator": "Exists"}]
    large = copy.deepcopy(golden["cni-daemonset"])
    template = large["request"]["object"]["spec"]["template"]["spec"]
    template["containers"][0]["env"] = [{"name": f"E{i}", "value": "v&" * 120} for i in range(2000)]
    large["request"]["operation"] = "UPDATE"
    large["request"]["oldObject"] = copy.deepcopy(large["request"]["object"])
    return [*clean, *host, ("update", update), ("update", update), ("large", large)]


def request_bytes(endpoint: str, review: dict[str, Any], uid: str) -> bytes:
    review["request"]["uid"] = uid
    body = json.dumps(review).encode()
    head = (f"POST /{endpoint} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines if ": " in line)}
    return int(status_line.split()[1]), await reader.readexactly(int(headers.get("content-length", "0")))


class Load:
    def __init__(self) -> None:
        self.sent = 0
        self.failures: list[str] = []
        self.late = 0
        self.latencies: list[float] = []
        self.by_kind: dict[str, int] = {}


async def connection(port: int, context: ssl.SSLContext, slot: int, args: argparse.Namespace,
                     deadline: float, load: Load) -> None:  # fmt: skip
    reviews = mix()
    reader, writer = await asyncio.open_connection(HOST, port, ssl=context, server_hostname=HOST)
    interval = args.connections / args.rate
    due = time.monotonic() + slot * interval / args.connections
    n = 0
    while due < deadline:  # bounded: ends at the deadline
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        kind, review = reviews[(n * 7 + slot) % len(reviews)]
        uid = f"soak-{slot}-{n}"
        endpoint = "mutate" if n % 2 else "validate"
        data = request_bytes(endpoint, review, uid)
        try:
            writer.write(data)
            await writer.drain()
            status, body = await asyncio.wait_for(answer(reader), 15)
            took = time.monotonic() - due  # from when it was due: queueing is not hidden
            got = json.loads(body)["response"]["uid"] if status == 200 else None
            if status != 200 or got != uid:
                load.failures.append(f"{kind} {endpoint}: HTTP {status}, uid {got!r} for {uid}")
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, KeyError) as err:
            took = time.monotonic() - due
            load.failures.append(f"{kind} {endpoint}: {type(err).__name__} {err}"[:200])
            writer.transport.abort()
            reader, writer = await asyncio.open_connection(HOST, port, ssl=context, server_hostname=HOST)
        load.sent += 1
        load.by_kind[kind] = load.by_kind.get(kind, 0) + 1
        load.latencies.append(took)
        load.late += took > 1.0
        n += 1
        due += interval
    writer.close()


def summary(samples: list[float]) -> dict[str, float]:
    first, last = samples[0], samples[-1]
    drift = round(100 * (last - first) / first, 1)
    return {"first": round(first, 1), "last": round(last, 1), "peak": round(max(samples), 1),
            "min": round(min(samples), 1), "drift_percent": drift}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pki = Pki.create(Path(tmp))
        process = Process(pki, "--example-nodes")
        server = psutil.Process(process.proc.pid)
        started = time.monotonic()
        deadline = started + args.minutes * 60
        load = Load()
        rss: list[float] = []
        fds: list[float] = []
        trace: list[tuple[float, float, int]] = []

        async def sample() -> None:
            # bounded; the last sample is taken under load, before the connections close at the deadline
            while time.monotonic() + args.sample_seconds + 1 < deadline:
                await asyncio.sleep(args.sample_seconds)
                now = time.monotonic() - started
                mib, open_fds = server.memory_info().rss / 2**20, server.num_fds()
                trace.append((round(now), round(mib, 1), open_fds))
                if now >= args.settle:
                    rss.append(mib)
                    fds.append(open_fds)
                if len(trace) % 12 == 0:
                    print(f"  {now:5.0f} s: {load.sent} sent, RSS {mib:.1f} MiB, {open_fds} fds, "
                          f"{len(load.failures)} failures", file=sys.stderr)  # fmt: skip

        try:
            context = pki.client_context()
            await asyncio.gather(sample(), *(connection(process.port, context, slot, args, deadline, load)
                                             for slot in range(args.connections)))  # fmt: skip
        finally:
            exit_code = process.stop()
        while not process.lines.empty():
            process.stdout.append(process.lines.get_nowait())
        loud = fuzzing.loud_lines(process.stdout, process.stderr)
    ordered = sorted(load.latencies)
    for line in [*load.failures[:10], *loud[:10]]:
        print("FAIL", line, file=sys.stderr)
    return {
        "minutes": args.minutes, "rate": args.rate, "connections": args.connections,
        "sent": load.sent, "by_kind": load.by_kind, "failures": len(load.failures), "late": load.late,
        "error_records": len(loud), "p50_seconds": round(ordered[len(ordered) // 2], 4),
        "p99_seconds": round(ordered[int(len(ordered) * 0.99)], 4), "max_seconds": round(ordered[-1], 3),
        "rss_mib": summary(rss), "open_fds": summary(fds), "exit_code": exit_code, "samples": trace,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=20, help="reviews per second, all connections")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--settle", type=float, default=30, help="seconds of load before the first sample")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    for key, value in figures.items():
        if key != "samples":
            print(f"{key:>14}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    flat = abs(figures["rss_mib"]["drift_percent"]) <= 5 and abs(figures["open_fds"]["drift_percent"]) <= 5
    clean = figures["failures"] == figures["error_records"] == figures["late"] == 0
    return 0 if flat and clean and figures["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
