"""Printing results to a reader that may stop reading: `check ... | head` ends quietly.

When stdout's reader goes away (EPIPE), the rest of the output is dropped and stdout is pointed at
/dev/null, so neither this print nor the interpreter's flush at exit raises; the command goes on and exits
with the code its results call for.
"""

from __future__ import annotations

import os
import sys


def emit(text: str) -> None:
    """Print `text` and a newline to stdout; nothing if the reader has gone."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing will flush it at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
