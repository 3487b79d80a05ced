"""Command line: `check` (the decision on manifests, offline), `serve`, `scan`, `certs`.

One module per command; errors have one handler here: every user-caused error (a WebhookError) is printed
as one line, "error: <field>: <message> (<fix>)", and the exit code is 2. Nothing else is caught: a bug is
a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from webhook import __version__
from webhook.cli import certs, check, scan, serve
from webhook.cli.exits import EXIT_ALLOWED, EXIT_BAD_INPUT, EXIT_DENIED
from webhook.errors import WebhookError

__all__ = ["EXIT_ALLOWED", "EXIT_BAD_INPUT", "EXIT_DENIED", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webhook", description="Keep host-bound pods off immutable-OS node pools."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (check, serve, scan, certs):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except WebhookError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code
