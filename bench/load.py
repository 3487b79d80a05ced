"""Driving wrk, the HTTP load generator, from the benches: requests in, its own figures out.

`run` writes a Lua script that POSTs a list of bodies round-robin over kept-alive connections and prints
wrk's summary and latency distribution as one JSON line when done; it runs wrk pinned to a CPU with
`taskset` and returns a `Result`. The percentiles are wrk's own (from its HdrHistogram-like buckets, in
µs). `make bench-tools` installs wrk (Debian package `wrk`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = "WRK_RESULT "

# Every body is read once per thread in `init` and pre-formatted by wrk.format: the per-request cost is a
# table lookup. `done` runs once, after every thread has stopped.
SCRIPT = """\
local bodies = {BODIES}
local prepared = {{}}
local n = 0
init = function(args)
  for i, item in ipairs(bodies) do
    local f = assert(io.open(item[2], "rb"))
    local body = f:read("*a")
    f:close()
    prepared[i] = wrk.format("POST", item[1], {{["Content-Type"] = "application/json"}}, body)
  end
end
request = function()
  n = n + 1
  return prepared[(n % #prepared) + 1]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{MARKER}{{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"mean_us":%.1f,"stdev_us":%.1f,"max_us":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"p999_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


class LoadToolMissing(SystemExit):
    pass


@dataclass(frozen=True)
class Post:
    path: str  # e.g. /validate
    body: bytes


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    errors: int  # connect, read, write, timeout and non-2xx/3xx answers together
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise LoadToolMissing("wrk is not installed: run `make bench-tools` (apt-get install wrk)")
    return found


def pinned(command: Sequence[str], cpu: int | None) -> list[str]:
    """`command` under `taskset -c cpu` (or as is when no CPU is given)."""
    return ["taskset", "-c", str(cpu), *command] if cpu is not None else list(command)


def run(
    url: str,
    posts: Sequence[Post],
    *,
    connections: int,
    seconds: float,
    cpu: int | None = None,
    timeout: float = 5.0,
) -> Result:
    """wrk on one thread, `connections` kept-alive connections to `url`, cycling through `posts`."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        items = []
        for i, post in enumerate(posts):
            path = Path(tmp, f"body-{i}.json")
            path.write_bytes(post.body)
            items.append(f"{{{json.dumps(post.path)}, {json.dumps(str(path))}}}")
        script = Path(tmp, "posts.lua")
        script.write_text(SCRIPT.format(BODIES="{" + ", ".join(items) + "}", MARKER=MARKER))
        command = [
            wrk_path(),
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            f"--timeout={timeout:g}s",
            "-s",
            str(script),
            url,
        ]
        done = subprocess.run(
            pinned(command, cpu), capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    raw = json.loads(line.removeprefix(MARKER))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Result(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=errors,
        mean_ms=raw["mean_us"] / 1e3,
        p50_ms=raw["p50_us"] / 1e3,
        p90_ms=raw["p90_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        p999_ms=raw["p999_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
    )


def cpus() -> tuple[int | None, int | None]:
    """(load tool's CPU, server's CPU): the first two this process may use, or (None, None) on one."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
