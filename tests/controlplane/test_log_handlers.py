"""The access log's handler writes the lines of one event-loop turn with one write."""

from __future__ import annotations

import asyncio
import io
import logging

from controlplane.log_handlers import MAX_BUFFERED, LoopBufferedStreamHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_off_a_loop_each_line_is_written_at_once() -> None:
    stream = CountingStream()
    logger = logger_with(LoopBufferedStreamHandler(stream), "test.access.sync")

    logger.info("one")
    assert stream.getvalue() == "one\n"
    logger.info("two")
    assert (stream.getvalue(), stream.writes) == ("one\ntwo\n", 2)


def test_on_a_loop_the_lines_of_one_turn_go_out_together_after_it() -> None:
    stream = CountingStream()
    logger = logger_with(LoopBufferedStreamHandler(stream), "test.access.loop")

    async def requests() -> tuple[str, str]:
        for n in range(5):
            logger.info("line %d", n)
        during = stream.getvalue()
        await asyncio.sleep(0)  # the loop's next turn
        return during, stream.getvalue()

    during, after = asyncio.run(requests())

    assert during == ""
    assert after == "".join(f"line {n}\n" for n in range(5))
    assert stream.writes == 1


def test_flush_writes_what_waits_and_a_full_buffer_writes_itself() -> None:
    stream = CountingStream()
    handler = LoopBufferedStreamHandler(stream)
    logger = logger_with(handler, "test.access.flush")

    async def burst() -> tuple[int, str]:
        for n in range(MAX_BUFFERED + 3):
            logger.info("%d", n)
        written = stream.getvalue().count("\n")
        handler.flush()  # as logging.shutdown() does at exit
        return written, stream.getvalue()

    written, everything = asyncio.run(burst())

    assert written == MAX_BUFFERED
    assert everything.splitlines() == [str(n) for n in range(MAX_BUFFERED + 3)]
