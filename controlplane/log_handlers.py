"""A log handler for the access log: lines emitted on an event loop are written together.

Every inference writes one access line. `logging.StreamHandler` writes and flushes each
line at once, one system call per request; under load a web process's event loop handles
dozens of requests per turn, so this handler keeps the lines of one turn and writes them
with one call, scheduled for when the loop has run what it was running (`call_soon`).
Off a loop (management commands, threads, tests) a line is written at once, as the stream
handler does. What is buffered is written at the latest on the loop's next turn, by
`flush()` (logging's shutdown), or when the buffer reaches `MAX_BUFFERED` lines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

MAX_BUFFERED = 512


class LoopBufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._write([*self._take(), line])
            return
        self._lines.append(line)  # emit runs under the handler's lock
        if len(self._lines) >= MAX_BUFFERED:
            self._write(self._take())
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_soon)

    def _take(self) -> list[str]:
        lines, self._lines = self._lines, []
        return lines

    def _flush_soon(self) -> None:
        self.acquire()
        try:
            self._scheduled = False
            self._write(self._take())
        finally:
            self.release()

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:  # as StreamHandler: a broken stream must not break the request
            self.handleError(logging.makeLogRecord({"msg": "access log write failed"}))

    def flush(self) -> None:
        self.acquire()
        try:
            self._write(self._take())
            super().flush()
        finally:
            self.release()
