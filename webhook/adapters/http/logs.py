"""Log lines: one JSON object a line on stdout, and the one line per judged review written cheaply.

`LineHandler` is the handler `serve` puts on the root logger: JSON lines (`JsonFormatter`), flushed once
per turn of the event loop. `log_fields(logger, level, msg, fields)` is `logger.log(level, msg,
extra={"fields": fields})`; when the only handler on the logger's way up is a LineHandler and nothing
filters, it writes the same line without making a LogRecord and dispatching it (about two thirds of
what the line costs, on the path of every host-access review).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import orjson

# What json.dumps would hand to `default` (str) goes there under orjson too.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _line(created: float, level: str, logger: str, msg: str, fields: dict[str, Any]) -> str:
    """The JSON line: time, level, logger, message, then the fields."""
    entry = {"ts": round(created, 3), "level": level.lower(), "logger": logger, "msg": msg, **fields}
    try:
        return orjson.dumps(entry, default=str, option=_PASSTHROUGH).decode()
    except orjson.JSONEncodeError:  # a lone surrogate, an integer past 64 bits
        return json.dumps(entry, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's `fields` (from `extra`)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra: dict[str, Any] = dict(fields) if isinstance(fields, dict) else {}
        if record.exc_info:
            extra["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return _line(record.created, record.levelname, record.name, record.getMessage(), extra)


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """JSON lines on a stream, flushed once per turn of the event loop rather than once per line.

    Each flush of stdout is a write(2); under load an event loop turn answers several reviews, each with
    its line, and their lines now go out in one write. Lines logged off the loop (the cluster watch's
    threads, startup, shutdown) are flushed at once, as before, and `logging.shutdown` flushes at exit.
    What a SIGKILL can lose is the lines of the loop turn it interrupts."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self._flush_due = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_fields(self, level: int, logger: str, msg: str, fields: dict[str, Any]) -> None:
        """The line JsonFormatter writes for such a record, without the record."""
        line = _line(time.time(), logging.getLevelName(level), logger, msg, fields)
        with self.lock:  # type: ignore[union-attr]  # (created by Handler.__init__)
            self._write(line)

    def _write(self, line: str) -> None:
        self.stream.write(line + self.terminator)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_due = False
        # As a failed write in `emit` would (handleError), a stream that cannot take it (closed, a
        # broken pipe) does not stop the loop; here there is no record to report it by.
        with contextlib.suppress(OSError, ValueError):
            self.flush()


def _direct(logger: logging.Logger, level: int) -> LineHandler | None:
    """The one handler a record of `logger` at `level` would reach, if it is a LineHandler that formats
    with JsonFormatter and no logger or handler on the way has a filter; else None."""
    found: LineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or not isinstance(handler, LineHandler)
                or type(handler.formatter) is not JsonFormatter
                or handler.filters
            ):
                return None
            if level >= handler.level:
                found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """`logger.log(level, msg, extra={"fields": fields})`, written directly where that is the same line."""
    if not logger.isEnabledFor(level):
        return
    handler = _direct(logger, level)
    if handler is None:
        logger.log(level, msg, extra={"fields": fields})
    else:
        handler.write_fields(level, logger.name, msg, fields)
