"""Reviews per second of the HTTPS service under wrk, next to a bare handler on the same stack (the ceiling).

Servers, each its own process pinned to one CPU (wrk on the other): `ours` is `python -m webhook serve` as
deployed (one uvicorn worker, TLS, JSON logs at info to stdout, here /dev/null) with the corpus's AKS
inventory (5 pools, 12 nodes, 3 zones) from `--nodes-file`; `ceiling` is a starlette app served by the same
`webhook.adapters.http.serve.serve` (same uvicorn config, TLS context and connection handling) whose one
handler parses the JSON body and answers `{"apiVersion", "kind", "response": {"uid", "allowed": true}}`
(`--ceiling asgi`: the same handler as a bare ASGI app, without starlette's middleware, routing, Request
and Response, which ours' /mutate and /validate skip too).

Cases: `clean` (testdata/reviews/clean-pod.json) and `host` (every pod with host access in the corpus:
the pods the workloads of testdata/workloads/ make, as their controllers create them, and the golden pod
reviews of testdata/reviews/ with host access: what the chart's matchConditions send), each to /validate
and to /mutate. Each round runs every case against both servers, which one goes first alternating;
ratios are taken within a round and the median over rounds is reported (robust to a busy machine).

Run: `.venv/bin/python bench/server.py [--quick] [--rounds 6] [--seconds 3] [--connections 16]
[--ceiling starlette|asgi] [--breakdown] [--profile FILE] [--json FILE]`; needs `make bench-tools`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import load  # noqa: E402
from tests.aks import wire  # noqa: E402
from tests.builders import aks_nodes  # noqa: E402
from webhook.adapters import certs  # noqa: E402
from webhook.core.workloads import POD_TEMPLATE_PATHS  # noqa: E402

HOST = "127.0.0.1"
ENDPOINTS = ("validate", "mutate")
GOAL = 0.75
# kube-system is never judged (`serve` exempts it, the chart never sends it): its agents are moved here.
JUDGED_NAMESPACE = "node-agents"


# --- the corpus ----------------------------------------------------------------------------------------


def has_host_access(spec: dict[str, Any]) -> bool:
    """What the chart's matchConditions let through: a hostPath volume or a host namespace."""
    volumes = spec.get("volumes") or []
    return any("hostPath" in v for v in volumes) or any(
        spec.get(k) is True for k in ("hostPID", "hostIPC", "hostNetwork")
    )


def controller_pods() -> Iterator[dict[str, Any]]:
    """Each workload's pod as its controller creates it (template metadata, generateName, owner)."""
    for file in sorted((ROOT / "testdata" / "workloads").glob("*.yaml")):
        if file.name == "expected.yaml":
            continue
        for doc in yaml.safe_load_all(file.read_text()):
            path = POD_TEMPLATE_PATHS.get((doc or {}).get("kind", ""))
            if path is None:
                continue
            meta = doc["metadata"]
            namespace = meta.get("namespace", "default")
            if not path:
                yield {**doc, "metadata": {**meta, "namespace": namespace}}
                continue
            template = doc
            for key in path:
                template = template[key]
            owner = {
                "apiVersion": doc["apiVersion"],
                "kind": doc["kind"],
                "name": meta["name"],
                "uid": "6f1c1d52-8a3b-4c1e-9d2f-0a1b2c3d4e5f",
                "controller": True,
                "blockOwnerDeletion": True,
            }
            pod_meta = {
                **template.get("metadata", {}),
                "generateName": f"{meta['name']}-",
                "namespace": namespace,
                "ownerReferences": [owner],
            }
            yield {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template["spec"]}


def review(pod: dict[str, Any], uid: str) -> dict[str, Any]:
    """A CREATE review of a pod as kube-apiserver writes it (admission.k8s.io/v1)."""
    namespace = pod["metadata"]["namespace"]
    if namespace == "kube-system":
        namespace = JUDGED_NAMESPACE
        pod = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
    kind = {"group": "", "version": "v1", "kind": "Pod"}
    resource = {"group": "", "version": "v1", "resource": "pods"}
    owner = (pod["metadata"].get("ownerReferences") or [{"kind": "ReplicaSet"}])[0]["kind"].lower()
    user = {
        "username": f"system:serviceaccount:kube-system:{owner}-controller",
        "uid": "5e1f0c2a-6b7d-4e8f-9a0b-1c2d3e4f5a6b",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
    }
    request = {
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": pod["metadata"].get("name", ""),
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": user,
        "object": pod,
        "oldObject": None,
        "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}


def corpus() -> dict[str, list[dict[str, Any]]]:
    """Case name -> the reviews of that case."""
    golden = [
        json.loads(f.read_text())["review"] for f in sorted((ROOT / "testdata" / "reviews").glob("*.json"))
    ]
    golden_pods = [
        r for r in golden if r["request"]["operation"] == "CREATE" and r["request"]["kind"]["kind"] == "Pod"
    ]
    host = [
        review(p, f"1b0e7c3a-{i:04x}-4000-8000-000000000000")
        for i, p in enumerate(controller_pods())
        if has_host_access(p["spec"])
    ]
    host += [r for r in golden_pods if has_host_access(r["request"]["object"]["spec"])]
    clean = [r for r in golden_pods if not has_host_access(r["request"]["object"]["spec"])]
    return {"clean": clean, "host": host}


def wire_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- the servers ---------------------------------------------------------------------------------------


def run_ours(args: argparse.Namespace) -> int:
    from webhook import cli

    if args.profile_to:
        profile_on_signals(args.profile_to)
    return cli.main(
        [
            "serve",
            "--host",
            HOST,
            "--port",
            str(args.port),
            "--cert-file",
            args.cert,
            "--key-file",
            args.key,
            "--nodes-file",
            args.nodes,
            "--log-level",
            "info",
        ]
    )


def run_ceiling(args: argparse.Namespace) -> int:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from webhook.adapters import tls
    from webhook.adapters.http.serve import ServeOptions, serve

    def allowed(body: bytes) -> dict[str, Any]:
        uid = json.loads(body)["request"]["uid"]
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }

    async def answer(request: Request) -> Response:
        return JSONResponse(allowed(await request.body()))

    async def raw(scope: Any, receive: Any, send: Any) -> None:
        """The same answer as `answer`, as a bare ASGI app: what ours' /mutate and /validate skip of
        starlette (middleware, routing, Request, Response), the ceiling skips too."""
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer = json.dumps(allowed(body), separators=(",", ":")).encode()
        headers = [(b"content-length", str(len(answer)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    if args.profile_to:
        profile_on_signals(args.profile_to)
    routes = [Route(f"/{endpoint}", answer, methods=["POST"]) for endpoint in ENDPOINTS]
    app = raw if args.ceiling == "asgi" else Starlette(routes=routes)
    options = ServeOptions(HOST, args.port, args.cert, args.key)
    asyncio.run(serve(app, options, tls.CertReloader(args.cert, args.key)))
    return 0


def profile_on_signals(path: str) -> None:
    """SIGUSR1 starts cProfile, SIGUSR2 stops it and writes `path`: only the measured window is profiled."""
    import cProfile

    profiler = cProfile.Profile(time.process_time)  # CPU time: a busy machine's preemptions are not charged

    def stop(*_: object) -> None:
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
    signal.signal(signal.SIGUSR2, stop)


@dataclass
class Server:
    role: str
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    role: str, files: dict[str, str], cpu: int | None, profile_to: str = "", ceiling: str = "starlette"
) -> Server:
    port = free_port()
    command = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--port",
        str(port),
        "--cert",
        files["cert"],
        "--key",
        files["key"],
        "--nodes",
        files["nodes"],
        "--profile-to",
        profile_to,
        "--ceiling",
        ceiling,
    ]
    proc = subprocess.Popen(load.pinned(command, cpu), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    context = ssl.create_default_context(cafile=files["ca"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"{role} exited {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection((HOST, port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname=HOST),
        ):
            return Server(role, proc, port)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{role} did not listen within 30 s")


def stop(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=5)


def answers(server: Server, ca: str, posts: list[load.Post]) -> list[dict[str, Any]]:
    """Each post answered once: a 200 carrying the request's uid, or the bench stops."""
    connection = http.client.HTTPSConnection(HOST, server.port, context=ssl.create_default_context(cafile=ca))
    out = []
    try:
        for post in posts:
            connection.request("POST", post.path, post.body, {"Content-Type": "application/json"})
            reply = connection.getresponse()
            body = reply.read()
            uid = json.loads(post.body)["request"]["uid"]
            answer = json.loads(body).get("response", {}) if reply.status == 200 else {}
            if answer.get("uid") != uid:
                raise SystemExit(f"{server.role} {post.path}: {reply.status} {body[:300]!r}")
            out.append(answer)
    finally:
        connection.close()
    return out


# --- measuring -----------------------------------------------------------------------------------------


@dataclass
class Cell:
    round: int
    case: str
    server: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the server process's user+system CPU per review
    rss_mb: float
    errors: int


def measure(server: Server, posts: list[load.Post], args: argparse.Namespace, round_: int, case: str) -> Cell:
    import psutil

    process = psutil.Process(server.proc.pid)
    before = process.cpu_times()
    result = load.run(
        server.url + "/", posts, connections=args.connections, seconds=args.seconds, cpu=args.wrk_cpu
    )
    after = process.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return Cell(
        round_,
        case,
        server.role,
        result.rps,
        result.p50_ms,
        result.p99_ms,
        cpu / max(result.requests, 1) * 1e6,
        process.memory_info().rss / 2**20,
        result.errors,
    )


def line(c: Cell) -> str:
    errors = f"  ERRORS {c.errors}" if c.errors else ""
    return (
        f"{c.round:>5} {c.case:<15} {c.server:<8} {c.rps:>9,.0f} {c.p50_ms:>7.2f} {c.p99_ms:>7.2f} "
        f"{c.cpu_us:>8.0f} {c.rss_mb:>6.0f} {os.getloadavg()[0]:>5.1f}{errors}"
    )


HEADER = (
    f"{'round':>5} {'case':<15} {'server':<8} {'reviews/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs':>8} "
    f"{'RSS MB':>6} {'load':>5}"
)


def summarize(cells: list[Cell], cases: list[str]) -> list[dict[str, Any]]:
    rows = []
    print(
        f"\nmedians over rounds (ratio = ours / ceiling within a round; its min-max in brackets):\n"
        f"{'case':<15} {'ours/s':>8} {'ceiling/s':>9} {'ratio':>6} {'range':>11} {'by CPU':>6} "
        f"{'ours p50/p99 ms':>15} {'ceil p50/p99':>13} {'ours µs':>7} {'ceil µs':>7} {'ours MB':>7}"
    )
    for case in cases:
        ours = [c for c in cells if c.case == case and c.server == "ours"]
        ceiling = [c for c in cells if c.case == case and c.server == "ceiling"]
        # A round where either server answered nothing (starved by other processes for the whole cell)
        # measured the machine, not the servers: left out.
        pairs = [(o, c) for o, c in zip(ours, ceiling, strict=True) if o.rps and c.rps]
        ratios = [o.rps / c.rps for o, c in pairs]
        by_cpu = [c.cpu_us / o.cpu_us for o, c in pairs]
        ours, ceiling = [o for o, _ in pairs], [c for _, c in pairs]
        row = {
            "case": case,
            "rounds": len(pairs),
            "ratio": load.median(ratios),
            "ratio_min": min(ratios, default=0.0),
            "ratio_max": max(ratios, default=0.0),
            "cpu_ratio": load.median(by_cpu),
            **{
                f"ours_{k}": load.median([getattr(c, k) for c in ours])
                for k in ("rps", "p50_ms", "p99_ms", "cpu_us", "rss_mb")
            },
            **{
                f"ceiling_{k}": load.median([getattr(c, k) for c in ceiling])
                for k in ("rps", "p50_ms", "p99_ms", "cpu_us", "rss_mb")
            },
        }
        rows.append(row)
        print(
            f"{case:<15} {row['ours_rps']:>8,.0f} {row['ceiling_rps']:>9,.0f} {row['ratio']:>6.3f} "
            f"{row['ratio_min']:>5.2f}-{row['ratio_max']:<5.2f} {row['cpu_ratio']:>6.3f} "
            f"{row['ours_p50_ms']:>7.2f}/{row['ours_p99_ms']:<7.2f} "
            f"{row['ceiling_p50_ms']:>6.2f}/{row['ceiling_p99_ms']:<6.2f} "
            f"{row['ours_cpu_us']:>7.0f} {row['ceiling_cpu_us']:>7.0f} {row['ours_rss_mb']:>7.0f}"
        )
    for row in rows:
        if row["case"].startswith("host"):
            met = "met" if row["ratio"] >= GOAL else "NOT met"
            print(f"{row['case']}: {row['ratio']:.3f} of the ceiling (goal >= {GOAL}: {met})")
    return rows


@contextlib.contextmanager
def materials() -> Iterator[dict[str, str]]:
    """A CA and a serving pair for 127.0.0.1, the CA file a client trusts, and the nodes file."""
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        ca = certs.generate_ca("bench-ca")
        serving = certs.issue_serving_cert(ca, "immutable-os-webhook", "webhook-system", ips=[HOST])
        files = {name: f"{tmp}/{name}" for name in ("cert", "key", "ca", "nodes")}
        Path(files["cert"]).write_bytes(serving.cert_pem)
        Path(files["key"]).write_bytes(serving.key_pem)
        Path(files["ca"]).write_bytes(ca.cert_pem)
        nodes = {"apiVersion": "v1", "kind": "List", "items": [wire(n) for n in aks_nodes("family")]}
        Path(files["nodes"]).write_text(json.dumps(nodes))  # JSON is YAML
        yield files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 1 s cells: a smoke run")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    parser.add_argument("--seconds", type=float, default=3.0, help="wrk's duration per cell (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--cases", default="clean/validate,clean/mutate,host/validate,host/mutate")
    parser.add_argument(
        "--breakdown", action="store_true", help="time ours' handler step by step, in-process"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="then both servers under cProfile, host cases: self time by layer (FILE.ours, FILE.ceiling)",
    )
    parser.add_argument(
        "--ceiling",
        choices=("starlette", "asgi"),
        default="starlette",
        help="the ceiling as a starlette route (the default) or as a bare ASGI app, as ours serves reviews",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    for hidden in ("--role", "--port", "--cert", "--key", "--nodes", "--profile-to"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        args.port = int(args.port)
        return run_ours(args) if args.role == "ours" else run_ceiling(args)
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    load.wrk_path()
    args.wrk_cpu, server_cpu = load.cpus()

    reviews = corpus()
    cases = args.cases.split(",")
    posts = {
        case: [load.Post(f"/{case.split('/')[1]}", wire_bytes(r)) for r in reviews[case.split("/")[0]]]
        for case in cases
    }
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
        f"load average {os.getloadavg()[0]:.2f}; wrk on CPU {args.wrk_cpu}, servers on CPU {server_cpu}; "
        f"{args.rounds} round(s) of {args.seconds:g} s cells, {args.connections} connections"
    )
    report: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if v is not None}}
    with materials() as files:
        servers = {role: start(role, files, server_cpu, ceiling=args.ceiling) for role in ("ours", "ceiling")}
        try:
            for case in cases:
                replies = answers(servers["ours"], files["ca"], posts[case])
                answers(servers["ceiling"], files["ca"], posts[case])
                sizes = [len(p.body) for p in posts[case]]
                denied = sum(not a["allowed"] for a in replies)
                patched = sum("patch" in a for a in replies)
                print(
                    f"{case}: {len(sizes)} reviews, {min(sizes) / 1024:.1f}-{max(sizes) / 1024:.1f} KB "
                    f"(mean {sum(sizes) / len(sizes) / 1024:.1f}); ours denies {denied}, patches {patched}"
                )
            for server in servers.values():  # warm-up, not measured
                load.run(
                    server.url + "/",
                    posts[cases[-1]],
                    connections=args.connections,
                    seconds=1,
                    cpu=args.wrk_cpu,
                )
            print(HEADER)
            cells: list[Cell] = []
            for round_ in range(args.rounds):
                order = ("ours", "ceiling") if round_ % 2 == 0 else ("ceiling", "ours")
                for case in cases:
                    for role in order:
                        cells.append(measure(servers[role], posts[case], args, round_, case))
                        print(line(cells[-1]), flush=True)
        finally:
            for server in servers.values():
                stop(server)
        report["cells"] = [asdict(c) for c in cells]
        report["summary"] = summarize(cells, cases)
        if args.profile:
            host = [p for c in cases if c.startswith("host") for p in posts[c]]
            report["profile"] = profile(files, host, server_cpu, args)
        if args.breakdown:
            report["breakdown"] = breakdown(reviews["host"], files["nodes"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


# Self time (cProfile tottime) by layer; builtins are charged to the layer that called them.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle (epoll wait)", ("select.epoll",)),
    ("TLS (OpenSSL)", ("_ssl.",)),
    ("socket syscalls", ("_socket.",)),
    ("JSON (orjson, json)", ("orjson.", "/json/", "_json.")),
    ("logging", ("/logging/", "webhook/cli/serve.py")),
    ("metrics (prometheus_client)", ("/prometheus_client/",)),
    ("webhook core: placement", ("webhook/core/placement/",)),
    ("webhook core: checks", ("webhook/core/policy/", "webhook/core/contracts.py")),
    ("webhook core: steering patch", ("webhook/core/mutation.py",)),
    ("webhook core: the rest", ("webhook/core/",)),
    ("webhook HTTP (serve, connections, service, edge)", ("webhook/adapters/http/",)),
    ("starlette", ("/starlette/",)),
    ("uvicorn + h11", ("/uvicorn/", "/h11/")),
    ("asyncio", ("/asyncio/", "selectors.py", "/ssl.py")),
)


def layer_of(file: str, name: str) -> str:
    where = f"{file}:{name}"
    return next((layer for layer, marks in LAYERS if any(m in where for m in marks)), "other")


def by_layer(path: str) -> tuple[int, dict[str, float]]:
    """Reviews answered and µs of self time per review, by layer, from a cProfile dump of a server."""
    import pstats

    stats: dict[Any, Any] = pstats.Stats(path).stats  # type: ignore[attr-defined]
    reviews = sum(
        v[1]
        for (f, _, n), v in stats.items()
        if n in ("handle", "answer") and f.endswith(("service.py", "server.py"))
    )
    layers: dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, callers) in stats.items():
        layer = layer_of(file, name)
        if layer == "other" and file == "~" and callers:  # a builtin: charged to its callers' layers
            for (cfile, _, cname), edge in callers.items():
                owner = layer_of(cfile, cname)
                layers[owner] = layers.get(owner, 0.0) + edge[2]
            continue
        layers[layer] = layers.get(layer, 0.0) + tottime
    return reviews, {k: v / max(reviews, 1) * 1e6 for k, v in layers.items()}


def profile(
    files: dict[str, str], posts: list[load.Post], cpu: int | None, args: argparse.Namespace
) -> dict[str, Any]:
    """Each server under cProfile for one cell of the host cases; self time per review by layer."""
    result: dict[str, Any] = {}
    for role in ("ours", "ceiling"):
        path = f"{args.profile}.{role}"
        server = start(role, files, cpu, profile_to=path)
        try:
            load.run(server.url + "/", posts, connections=args.connections, seconds=1, cpu=args.wrk_cpu)
            server.proc.send_signal(signal.SIGUSR1)
            load.run(
                server.url + "/", posts, connections=args.connections, seconds=args.seconds, cpu=args.wrk_cpu
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            server.proc.send_signal(signal.SIGUSR2)
            for _ in range(100):  # bounded: 10 s for the dump
                if os.path.exists(path):
                    break
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop(server)
        result[role] = by_layer(path)
    (ours_n, ours), (ceiling_n, ceiling) = result["ours"], result["ceiling"]
    print(
        f"\nunder cProfile, self time per review by layer, µs ({ours_n} and {ceiling_n} reviews; dumps in "
        f"{args.profile}.ours/.ceiling; the profiler inflates Python calls: compare columns, not absolutes):"
    )
    print(f"  {'layer':<48} {'ours':>8} {'ceiling':>8} {'extra':>8}")
    for layer in sorted(set(ours) | set(ceiling), key=lambda k: -ours.get(k, 0.0)):
        a, b = ours.get(layer, 0.0), ceiling.get(layer, 0.0)
        print(f"  {layer:<48} {a:8.1f} {b:8.1f} {a - b:+8.1f}")
    busy = [sum(v for k, v in x.items() if not k.startswith("idle")) for x in (ours, ceiling)]
    print(f"  {'total, idle excluded':<48} {busy[0]:8.1f} {busy[1]:8.1f} {busy[0] - busy[1]:+8.1f}")
    return {"ours": ours, "ceiling": ceiling}


async def _one_body(body: bytes) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": False}


def breakdown(reviews: list[dict[str, Any]], nodes: str) -> dict[str, float]:
    """Ours' handler step by step, in this process, on the host reviews to both endpoints: CPU µs per review,
    the fastest of 5 repeats of each step on each review (no profiler). Inside a running event loop, as
    in the server (log lines are flushed once per loop turn)."""
    return asyncio.run(_breakdown(reviews, nodes))


async def _breakdown(reviews: list[dict[str, Any]], nodes: str) -> dict[str, float]:
    import timeit

    import orjson

    from webhook.adapters.files import load_nodes
    from webhook.adapters.http.edge import ascii_json
    from webhook.adapters.http.inventory import InventoryState
    from webhook.adapters.http.service import AdmissionService, Judged
    from webhook.adapters.http.sources import StaticSource
    from webhook.cli import serve as cli
    from webhook.core.admission import Endpoint, answer, respond
    from webhook.core.assessment import assess
    from webhook.core.config import Config, never_judged
    from webhook.core.review import read_review

    def cpu_us(step: Any) -> float:
        return min(timeit.repeat(step, number=20, repeat=5, timer=time.process_time)) / 20 * 1e6

    def run(coroutine: Any) -> Any:  # the handler never waits here: its body is already in
        with contextlib.suppress(StopIteration):
            coroutine.send(None)

    async def ignore(message: Any) -> None:
        pass

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        cli.configure_logging("info")
        config = Config().exempting(never_judged(""))
        state = InventoryState(config)
        state.replace_nodes(load_nodes(nodes))
        service = AdmissionService(config, state, StaticSource())
        inventory = state.snapshot.usable(False)

        def cold(endpoint: Endpoint, scope: Any, receive: Any, holders: tuple[Any, ...]) -> float:
            """One review with the memos of `holders` emptied first."""
            for holder in holders:
                holder.memo._answers.clear()
                holder.judgements._answers.clear()
            start = time.process_time()
            run(service.handle(endpoint, scope, receive, ignore))
            return (time.process_time() - start) * 1e6

        context: dict[str, Any] = {"config": config, "inventory": inventory, "namespace_labels": {}}

        def steps_of(body: bytes, endpoint: Endpoint) -> dict[str, float]:
            scope = {"type": "http", "method": "POST", "path": f"/{endpoint.value}",
                     "headers": [(b"content-type", b"application/json")]}  # fmt: skip

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            decoded = orjson.loads(body)
            request = read_review(decoded)
            verdict = answer(request, endpoint=endpoint, **context)
            reply = respond(request.uid, verdict)
            judged = Judged(request.uid, reply, verdict, request)
            return {
                "handle, memos empty (a pod not seen before)": cold(
                    endpoint, scope, receive, (config, inventory)
                ),
                "handle, inventory memos empty (just after the nodes changed)": cold(
                    endpoint, scope, receive, (inventory,)
                ),
                "handle (all of it)": cpu_us(lambda: run(service.handle(endpoint, scope, receive, ignore))),
                "JSON decode (orjson)": cpu_us(lambda: orjson.loads(body)),
                "read_review": cpu_us(lambda: read_review(decoded)),
                "assess (checks, placement, steering plan)": cpu_us(lambda: assess(request, **context)),
                "answer (assess + mutate or validate)": cpu_us(
                    lambda: answer(request, endpoint=endpoint, **context)
                ),
                "respond (patch, warnings, audit)": cpu_us(lambda: respond(request.uid, verdict)),
                "JSON encode of the answer": cpu_us(lambda: ascii_json(reply)),
                "metrics + log line": cpu_us(lambda: service._record(endpoint, judged, verdict, 0.001)),
            }

        rows = [steps_of(wire_bytes(r), e) for r in reviews for e in (Endpoint.VALIDATE, Endpoint.MUTATE)]
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        bodies = [wire_bytes(r) for r in reviews]
        for profiling in (False, True):  # a pass to fill the memos again, then the profiled pass
            if profiling:
                profiler.enable()
            for body in bodies:
                for endpoint in (Endpoint.VALIDATE, Endpoint.MUTATE):
                    scope = {"type": "http", "method": "POST", "path": f"/{endpoint.value}",
                             "headers": [(b"content-type", b"application/json")]}  # fmt: skip
                    run(service.handle(endpoint, scope, partial(_one_body, body), ignore))
        profiler.disable()
        calls = pstats.Stats(profiler).total_calls / (2 * len(bodies))  # type: ignore[attr-defined]
        await asyncio.sleep(0)  # the last flush, while stdout is still open
        logging.getLogger().handlers.clear()
    steps = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    whole = (
        "handle, memos empty (a pod not seen before)",
        "handle, inventory memos empty (just after the nodes changed)",
        "handle (all of it)",
    )
    steps["of handle: the HTTP edge and the rest"] = steps["handle (all of it)"] - sum(
        v for k, v in steps.items() if k not in (*whole, "assess (checks, placement, steering plan)")
    )
    steps["Python calls per review (cProfile, warm)"] = calls
    print("\nours' handler, in this process, CPU µs per host review (both endpoints; fastest of 5 repeats):")
    for name, us in steps.items():
        print(f"  {name:<66} {us:8.1f}")
    return steps


if __name__ == "__main__":
    sys.exit(main())
