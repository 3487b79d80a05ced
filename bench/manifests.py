"""Documents per second of `check` on 500 DaemonSets: YAML parsing (pure-Python vs the C loader), JSON, and
the whole command (read, classify, judge, print).

The DaemonSets are the corpus's own (testdata/workloads/), renamed and repeated to 500, in one multi-document
YAML file (about 1 MB) and as one `kind: List` JSON file. Run: `.venv/bin/python bench/manifests.py
[--count N] [--rounds R] [--json]`. Figures are the best of R rounds (wall time); nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from webhook.cli import main  # noqa: E402

CORPUS = REPO / "testdata" / "workloads"


def daemon_sets(count: int) -> list[dict[str, Any]]:
    """`count` DaemonSets: the corpus's DaemonSets in turn, each renamed `<name>-<i>`."""
    found = [
        doc
        for path in sorted(CORPUS.glob("*.yaml"))
        if path.name != "expected.yaml"
        for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader)
        if isinstance(doc, dict) and doc.get("kind") == "DaemonSet"
    ]
    result = []
    for i in range(count):
        doc = json.loads(json.dumps(found[i % len(found)]))
        doc["metadata"]["name"] = f"{doc['metadata']['name']}-{i}"
        result.append(doc)
    return result


def best(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def check(path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["check", "--include-system-namespaces", str(path)])


def run(count: int, rounds: int) -> dict[str, Any]:
    docs = daemon_sets(count)
    text = yaml.safe_dump_all(docs, sort_keys=False)
    as_json = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path, json_path = Path(tmp) / "ds.yaml", Path(tmp) / "ds.json"
        yaml_path.write_text(text)
        json_path.write_text(as_json)
        pure, libyaml = yaml.SafeLoader, yaml.CSafeLoader
        seconds = {
            "parse: yaml.SafeLoader (pure Python)": best(rounds, lambda: list(yaml.load_all(text, pure))),
            "parse: yaml.CSafeLoader (libyaml)": best(rounds, lambda: list(yaml.load_all(text, libyaml))),
            "parse: json.loads (List)": best(rounds, lambda: json.loads(as_json)),
            "check FILE.yaml (read, classify, judge, print)": best(rounds, lambda: check(yaml_path)),
            "check FILE.json": best(rounds, lambda: check(json_path)),
        }
    return {
        "documents": count,
        "yamlBytes": len(text.encode()),
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "python": platform.python_version(),
        "results": {name: {"seconds": s, "documentsPerSecond": count / s} for name, s in seconds.items()},
    }


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.count, args.rounds)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{figures['documents']} DaemonSets, {figures['yamlBytes'] / 1e6:.2f} MB of YAML; "
          f"libyaml {'available' if figures['libyaml'] else 'MISSING'}; Python {figures['python']}; "
          f"best of {args.rounds} rounds")  # fmt: skip
    width = max(len(name) for name in figures["results"])
    for name, result in figures["results"].items():
        ms, rate = result["seconds"] * 1000, result["documentsPerSecond"]
        print(f"  {name.ljust(width)}  {ms:8.1f} ms  {rate:8.0f} docs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
