"""The JSON log lines of `serve`: the direct path for the per-review line writes what logging would, and
lines logged on the event loop reach the stream once per loop turn."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

from webhook.adapters.http.logs import LineHandler, log_fields

FIELDS = {
    "uid": "u-1",
    "decision": "denied",
    "findings": ["host-path:spec.volumes[0].hostPath.path"],
    "ms": 0.5,
}


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@contextlib.contextmanager
def line_handler_only() -> Iterator[CountingStream]:
    """A LineHandler as the root logger's only handler, as `serve` configures it, writing to a stream we
    read. Entered in the test itself: pytest puts its own capture handlers on the root logger when the
    test starts, after its fixtures ran, and with them there the direct path is never taken."""
    out = CountingStream()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [LineHandler(out)]
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@contextlib.contextmanager
def records_made() -> Iterator[list[logging.LogRecord]]:
    """The LogRecords made meanwhile."""
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record)
        return record

    logging.setLogRecordFactory(counting)
    try:
        yield made
    finally:
        logging.setLogRecordFactory(factory)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def without_time(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "ts"}


def test_the_direct_line_is_the_line_logging_writes() -> None:
    with line_handler_only() as stream:
        logger = logging.getLogger("webhook.review.test")
        with records_made() as made:
            logger.info("review", extra={"fields": FIELDS})
        assert len(made) == 1
        with records_made() as made:
            log_fields(logger, logging.INFO, "review", FIELDS)
        assert made == []  # written directly, no LogRecord made
        via_logging, direct = lines(stream)
        assert without_time(direct) == without_time(via_logging)
        assert direct["logger"] == "webhook.review.test" and direct["level"] == "info"
        assert abs(direct["ts"] - via_logging["ts"]) < 5


def test_levels_and_filters_are_honoured() -> None:
    with line_handler_only() as stream:
        logger = logging.getLogger("webhook.review.filtered")
        log_fields(logger, logging.DEBUG, "review", FIELDS)  # below the root's level: nothing
        assert lines(stream) == []

        class DropDenied(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                return getattr(record, "fields", {}).get("decision") != "denied"

        logger.addFilter(DropDenied())
        try:
            log_fields(logger, logging.INFO, "review", FIELDS)
            log_fields(logger, logging.INFO, "review", {**FIELDS, "decision": "steered"})
        finally:
            logger.filters.clear()
        assert [entry["decision"] for entry in lines(stream)] == ["steered"]


def test_another_handler_on_the_way_gets_the_record_too() -> None:
    with line_handler_only() as stream:
        logger = logging.getLogger("webhook.review.captured")
        seen: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record)

        logger.addHandler(Keep())
        try:
            log_fields(logger, logging.INFO, "review", FIELDS)
        finally:
            logger.handlers.clear()
        assert [r.fields for r in seen] == [FIELDS]  # type: ignore[attr-defined]
        assert [entry["uid"] for entry in lines(stream)] == ["u-1"]


def test_a_line_handler_with_another_formatter_gets_the_record() -> None:
    with line_handler_only() as stream:
        handler = logging.getLogger().handlers[0]
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(fields)s"))
        log_fields(logging.getLogger("webhook.review.plain"), logging.INFO, "review", {"uid": "u-1"})
        assert stream.getvalue() == "INFO review {'uid': 'u-1'}\n"


def test_lines_logged_in_one_loop_turn_are_flushed_once() -> None:
    with line_handler_only() as stream:
        logger = logging.getLogger("webhook.review.loop")

        async def one_turn() -> int:
            for i in range(3):
                log_fields(logger, logging.INFO, "review", {**FIELDS, "uid": f"u-{i}"})
            logger.warning("and one through logging")
            flushed_meanwhile = stream.flushes
            await asyncio.sleep(0)  # the loop turns: the flush it scheduled runs
            await asyncio.sleep(0)
            return flushed_meanwhile

        assert asyncio.run(one_turn()) == 0
        assert stream.flushes == 1
        assert [entry["msg"] for entry in lines(stream)] == ["review"] * 3 + ["and one through logging"]
        logger.warning("off the loop")  # no loop running: flushed at once
        assert stream.flushes == 2
