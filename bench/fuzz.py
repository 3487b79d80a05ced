"""Seeded fuzzing of the HTTP edge at length: `--cases` mutated reviews (tests/fuzzing.py) against
`python -m webhook serve` on a free 127.0.0.1 port, then its figures: cases, answers by status, 5xx,
wrong uids, late and missing answers, error records and tracebacks in its log, max and p99 latency, and
its RSS fresh, at the start (after one unmutated pass over the corpus and `--warm` fuzzed cases of
another seed, which fill the core's bounded memos), its peak, and at the end.

`--held N` first opens N idle or slow connections (TCP only, TLS and nothing more, a head that never
ends, a body far from its declared length), asks one review on a new connection, and reports the RSS
and how long that answer took; the fuzzing follows once they are closed.

Run: `.venv/bin/python bench/fuzz.py [--cases 100000] [--seed S] [--workers 4] [--held 2000] [--json F]`.
Exit code 1 if any figure breaks the contract (docs/reliability.md, "The HTTP edge").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fuzzing
from tests.pki import HOST, Pki
from tests.serving import Process, hold

REVIEW = fuzzing.corpus()[0].encode()


async def held_connections(process: Process, context: ssl.SSLContext, count: int) -> dict[str, Any]:
    import asyncio.sslproto  # the client's own TLS buffers: 16 KiB, as the server's

    asyncio.sslproto.SSLProtocol.max_size = 16 * 1024  # type: ignore[attr-defined]
    before = fuzzing.memory_of(process.proc.pid)
    held: list[Any] = []
    for start in range(0, count, 100):  # bounded: batches of 100
        batch = [hold(process.port, context, i % 4) for i in range(start, min(count, start + 100))]
        held += await asyncio.gather(*batch, return_exceptions=True)
    opened = sum(1 for h in held if not isinstance(h, BaseException))
    case = fuzzing.warm_up(0).__next__()
    started = time.perf_counter()
    report = await fuzzing.drive(HOST, process.port, context, [case], workers=1)
    answered = time.perf_counter() - started
    during = fuzzing.memory_of(process.proc.pid)
    for h in held:
        if not isinstance(h, BaseException):
            h[1].transport.abort()
    await asyncio.sleep(1.0)
    after = fuzzing.memory_of(process.proc.pid)
    return {"held": count, "opened": opened, "answered_seconds": round(answered, 3),
            "answer_ok": not report.failures, "rss_before_mib": before["VmRSS"] >> 20,
            "rss_held_mib": during["VmRSS"] >> 20, "rss_peak_mib": during["VmHWM"] >> 20,
            "rss_after_mib": after["VmRSS"] >> 20}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        pki = Pki.create(Path(tmp))
        context = pki.client_context()
        process = Process(pki, "--example-nodes")
        figures: dict[str, Any] = {"seed": args.seed}
        try:
            if args.held:
                figures["held"] = await held_connections(process, context, args.held)
            fresh = fuzzing.memory_of(process.proc.pid)
            warm = await fuzzing.drive(HOST, process.port, context, fuzzing.warm_up(args.seed, args.warm))
            await asyncio.sleep(0.5)
            start = fuzzing.memory_of(process.proc.pid)
            began = time.monotonic()
            last = [began]

            def progress(report: fuzzing.Report) -> None:
                if time.monotonic() - last[0] > 10:
                    last[0] = time.monotonic()
                    rss = fuzzing.memory_of(process.proc.pid)["VmRSS"] >> 20
                    print(
                        f"  {report.cases} cases, {len(report.failures)} failures, RSS {rss} MiB",
                        file=sys.stderr,
                    )

            work = fuzzing.cases(args.seed, args.cases, huge_mb=args.huge_mb)
            report = await fuzzing.drive(HOST, process.port, context, work, workers=args.workers,
                                         progress=progress)  # fmt: skip
            seconds = time.monotonic() - began
            await asyncio.sleep(2.0)
            end = fuzzing.memory_of(process.proc.pid)
        finally:
            exit_code = process.stop()
        while not process.lines.empty():
            process.stdout.append(process.lines.get_nowait())
        loud = fuzzing.loud_lines(process.stdout, process.stderr)
    figures.update({
        "cases": report.cases, "seconds": round(seconds, 1),
        "by_status": dict(sorted(report.statuses.items())),
        "expected": dict(report.expected), "5xx": report.server_errors, "wrong_uid": report.wrong_uid,
        "late": report.late, "missing": report.missing, "failures": len(report.failures) + len(warm.failures),
        "error_records": len(loud), "max_seconds": round(max(report.latencies), 3),
        "p99_seconds": round(report.percentile(0.99), 4), "p50_seconds": round(report.percentile(0.5), 4),
        "rss_fresh_mib": round(fresh["VmRSS"] / 2**20, 1), "rss_start_mib": round(start["VmRSS"] / 2**20, 1),
        "rss_peak_mib": round(end["VmHWM"] / 2**20, 1),
        "rss_end_mib": round(end["VmRSS"] / 2**20, 1),
        "rss_drift_percent": round(100 * (end["VmRSS"] - start["VmRSS"]) / start["VmRSS"], 1),
        "exit_code": exit_code,
    })  # fmt: skip
    for line in [*warm.failures, *report.failures][: args.show]:
        print("FAIL", line, file=sys.stderr)
    for line in loud[: args.show]:
        print("LOG ", line, file=sys.stderr)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--workers", type=int, default=4, help="concurrent keep-alive connections")
    parser.add_argument("--huge-mb", type=int, default=max(fuzzing.HUGE_MB), help="largest huge string, MB")
    parser.add_argument("--warm", type=int, default=2000, help="fuzzed cases (another seed) before the start")
    parser.add_argument("--held", type=int, default=0, help="first hold this many idle/slow connections")
    parser.add_argument("--show", type=int, default=30, help="print at most this many failures")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    for key, value in figures.items():
        print(f"{key:>18}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    held = figures.get("held", {})
    held_ok = not held or (held["answer_ok"] and held["answered_seconds"] <= 1)
    clean = figures["failures"] == figures["error_records"] == 0 and figures["exit_code"] == 0
    ok = clean and figures["rss_drift_percent"] <= 10 and held_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
