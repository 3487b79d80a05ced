"""The JSON log lines of `serve`: the direct path for the per-review line writes what logging would, and
lines logged on the event loop reach the stream once per loop turn."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

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


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    """A LineHandler on the root logger, as `serve` configures it, writing to a stream we read."""
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


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def without_time(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "ts"}


def test_the_direct_line_is_the_line_logging_writes(stream: CountingStream) -> None:
    logger = logging.getLogger("webhook.review.test")
    logger.info("review", extra={"fields": FIELDS})
    log_fields(logger, logging.INFO, "review", FIELDS)
    via_logging, direct = lines(stream)
    assert without_time(direct) == without_time(via_logging)
    assert direct["logger"] == "webhook.review.test" and direct["level"] == "info"
    assert abs(direct["ts"] - via_logging["ts"]) < 5


def test_levels_and_filters_are_honoured(stream: CountingStream) -> None:
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


def test_another_handler_on_the_way_gets_the_record_too(stream: CountingStream) -> None:
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


def test_lines_logged_in_one_loop_turn_are_flushed_once(stream: CountingStream) -> None:
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
