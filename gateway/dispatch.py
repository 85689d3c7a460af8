"""Enqueueing requests on a version's stream and awaiting their replies.

A version has one stream per priority level (dataplane/priority.py): a request goes
to its key's level, and is refused (503) once the version's streams together hold
that level's cap, checked and appended in the same script as the rate limit.

Each web process owns one reply list. A single background task pops replies
from it in batches (BLMPOP) and resolves the waiting requests' futures, so a
request costs one Redis round trip to enqueue and none to wait.

The same task notices requests whose queue vanished: a Redis restarted without
persistence, flushed, or a stream deleted. No worker will ever answer those, so
rather than let them wait out their deadline (10 s by default, up to 600 s), it
checks, about once a second and at once after the connection was lost, that the
stream entries of requests waiting longer than a second still exist, and answers
those whose entry is gone 503 with Retry-After. A worker pushes a reply before it
deletes the entry (workers/consumer.py), so a gone entry whose reply is not yet in
the reply list after the check has no reply coming.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from accounts import ratelimit
from dataplane import priority, scripts
from dataplane.connection import RedisTarget, async_client, parse_target
from dataplane.keys import RedisKeys
from dataplane.link import async_link_for
from dataplane.wire import WireReply, decode_reply, decode_reply_id, encode_request
from gateway.coalesce import ScriptBatcher
from gateway.protocol import ParsedRequest, ProtocolError
from observability import metrics
from observability.recorder import BulkHistogram

logger = logging.getLogger(__name__)

REPLY_BATCH = 512
# How often, and after how long a wait, requests are checked for a vanished queue.
LOST_CHECK_SECONDS = 1.0
LOST_CHECK_AGE_SECONDS = 1.0

# KEYS: a stream. ARGV: entry ids. Returns the ids that are no longer on the stream.
MISSING_ENTRIES_SCRIPT = """
local missing = {}
for _, id in ipairs(ARGV) do
    if #redis.call('XRANGE', KEYS[1], id, id) == 0 then
        missing[#missing + 1] = id
    end
end
return missing
"""


METRICS_SECONDS = 1.0


class LevelMetrics:
    """Requests admitted and shed, and queue waits, per priority level: counted here and added to
    Prometheus at most once a second (as observability/recorder.py does with its histograms: in
    multiprocess mode each increment takes a lock and writes a memory-mapped file, which per
    request was a measurable share of a web process's time)."""

    def __init__(self) -> None:
        self.admitted = dict.fromkeys(priority.LEVELS, 0)
        self.shed = dict.fromkeys(priority.LEVELS, 0)
        self.waits = {level: BulkHistogram(metrics.PRIORITY_QUEUE_SECONDS.labels(level)) for level in priority.LEVELS}
        self.due = time.monotonic() + METRICS_SECONDS

    def apply(self) -> None:
        self.due = time.monotonic() + METRICS_SECONDS
        for outcome, counts in (("admitted", self.admitted), ("shed", self.shed)):
            for level, count in counts.items():
                if count:
                    metrics.PRIORITY_REQUESTS.labels(level, outcome).inc(count)
                    counts[level] = 0
        for histogram in self.waits.values():
            histogram.apply()


def queue_full(level: str, cap: int, max_queue_size: int) -> ProtocolError:
    if cap >= max_queue_size:
        what = f"the model's queue is full ({max_queue_size} requests)"
    else:
        what = (
            f"the model's queue is full for priority level '{level}' "
            f"(this level may queue up to {cap} of the model's {max_queue_size} requests)"
        )
    return ProtocolError(503, f"{what}; retry later", [(b"retry-after", b"1")])


def lost() -> ProtocolError:
    return ProtocolError(
        503,
        "the request was lost from its queue (Redis restarted or was flushed); send it again",
        [(b"retry-after", b"1")],
    )


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A request on its stream (or refused by its key's rate limit: `entry` is None)."""

    request_key: str  # matches the reply to its waiter
    stream: str
    entry: Any  # the stream entry id
    rate_decision: list[Any] | None  # the rate-limit script's answer, when a key was checked
    deadline: float  # wall clock, seconds
    timeout_s: float
    level: str = priority.DEFAULT_LEVEL


def _expire(future: asyncio.Future[WireReply]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Dispatcher:
    def __init__(self, redis: RedisTarget | str, keys: RedisKeys) -> None:
        target = parse_target(redis) if isinstance(redis, str) else redis
        self.keys = keys
        self.gateway_id = uuid.uuid4().hex
        self.reply_key = keys.reply_list(self.gateway_id)
        self.redis = async_client(target, max_connections=512)
        # Blocking pops get their own connection so they never hold up enqueues.
        self._reply_redis = async_client(target)
        self._reply_link = async_link_for(self._reply_redis)  # the listener's pops, straight (dataplane/link.py)
        self._enqueue = ScriptBatcher(self.redis, scripts.ENQUEUE_SCRIPT)
        self._admit = ScriptBatcher(self.redis, scripts.ADMIT_BODY, prelude=ratelimit.FUNCTION)
        # On a cluster a key's rate state and a version's streams live in different slots: the
        # rate limit and the enqueue are two scripts there (docs/operations.md says what that trades).
        self._split_admission = target.cluster
        self._rate_limit = ScriptBatcher(self.redis, ratelimit.BODY, prelude=ratelimit.FUNCTION)
        self._waiting: dict[str, asyncio.Future[WireReply]] = {}
        # request key -> (stream, entry id, when enqueued): what the lost-queue check looks at.
        self._queued: dict[str, tuple[str, Any, float]] = {}
        self._missing = self.redis.register_script(MISSING_ENTRIES_SCRIPT)
        # Reply-matching keys only need to be unique within this gateway's reply list.
        self._keys = itertools.count()
        self._listener: asyncio.Task[None] | None = None
        self.levels = LevelMetrics()

    async def submit(
        self,
        version_id: int,
        request: ParsedRequest,
        timeout_s: float,
        max_queue_size: int,
        level: str = priority.DEFAULT_LEVEL,
    ) -> WireReply:
        """Enqueue and await the reply (no rate limit: shadow copies)."""
        return await self.wait(await self.enqueue(version_id, request, timeout_s, max_queue_size, level=level))

    async def enqueue(
        self,
        version_id: int,
        request: ParsedRequest,
        timeout_s: float,
        max_queue_size: int,
        admission: tuple[list[str], list[Any]] | None = None,
        traceparent: str | None = None,
        level: str = priority.DEFAULT_LEVEL,
    ) -> Enqueued:
        """Put the request on its version's stream for its priority `level`. With `admission` (a key's rate-limit
        keys and arguments), the rate limit runs in the same script as the enqueue, one
        round trip for both; the ticket carries its decision, and nothing was enqueued
        when it refused. 503 when the queue is full for the level or Redis is unreachable. A
        `traceparent` goes with the request to the worker (a request sampled for tracing)."""
        self._ensure_listener()
        now = time.time()
        deadline = now + timeout_s
        request_key = f"{next(self._keys):x}"
        fields = encode_request(
            request_key,
            self.reply_key,
            int(deadline * 1000),
            round(now * 1000, 3),  # µs precision: the queue stage is often under a millisecond
            [(i.name, i.datatype, i.shape, i.raw) for i in request.inputs],
            request.outputs,
            traceparent,
        )
        # Waiting before the enqueue: the reply may arrive before the script's answer does.
        future: asyncio.Future[WireReply] = asyncio.get_running_loop().create_future()
        self._waiting[request_key] = future
        flat: list[Any] = []
        for key, value in fields.items():
            flat += [key, value]
        streams = self.keys.request_streams(version_id)
        stream = self.keys.request_stream(version_id, level)
        others = [s for s in streams if s != stream]
        cap = priority.queue_cap(max_queue_size, level)
        decision: list[Any] | None = None
        try:
            if admission is None:
                entry = await self._enqueue([stream, *others], [cap, *flat])
            elif self._split_admission:
                rate_keys, rate_args = admission
                decision = await self._rate_limit(rate_keys, rate_args)
                entry = None
                if decision is not None and int(decision[0]) == 1:
                    # 0 for a full queue, as the admit script answers it (None means refused by the limit).
                    entry = await self._enqueue([stream, *others], [cap, *flat]) or 0
            else:
                rate_keys, rate_args = admission
                decision, entry = await self._admit([stream, *rate_keys, *others], [cap, *rate_args, *flat])
        except (aioredis.RedisError, OSError) as exc:
            self._waiting.pop(request_key, None)
            raise ProtocolError(503, f"the request queue is unreachable: {exc}", [(b"retry-after", b"1")]) from exc
        if entry is None and decision is not None:
            self._waiting.pop(request_key, None)  # refused by the rate limit: nothing to wait for
            return Enqueued(request_key, stream, None, decision, deadline, timeout_s, level)
        if entry is None or entry == 0:
            self._waiting.pop(request_key, None)
            self.levels.shed[level] += 1
            raise queue_full(level, cap, max_queue_size)
        self.levels.admitted[level] += 1
        self._queued[request_key] = (stream, entry, time.monotonic())
        return Enqueued(request_key, stream, entry, decision, deadline, timeout_s, level)

    async def wait(self, ticket: Enqueued) -> WireReply:
        """The reply to an enqueued request; 504 at its deadline (and off the queue then)."""
        future = self._waiting.get(ticket.request_key)
        if ticket.entry is None or future is None:
            raise ProtocolError(500, "waited on a request that was never enqueued")
        loop = asyncio.get_running_loop()
        # A timer on the future itself: asyncio.wait_for costs a task and a waiter per request.
        timer = loop.call_at(loop.time() + max(0.0, ticket.deadline - time.time()), _expire, future)
        try:
            reply = await future
            if reply.status == 200:
                self.levels.waits[ticket.level].observe(reply.queue_ms / 1000)
            return reply
        except TimeoutError:
            # Off the queue: it must neither run late nor count against the queue size.
            with contextlib.suppress(aioredis.RedisError, OSError):
                await self.redis.xdel(ticket.stream, ticket.entry)
            raise ProtocolError(
                504, f"no reply within the request's deadline of {ticket.timeout_s * 1000:.0f} ms"
            ) from None
        finally:
            timer.cancel()
            self._waiting.pop(ticket.request_key, None)
            self._queued.pop(ticket.request_key, None)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        next_check = time.monotonic() + LOST_CHECK_SECONDS
        suspect = False  # the connection was lost: whatever waited may be gone
        while True:
            try:
                popped: Any
                if self._reply_link is not None:
                    popped = await self._reply_link.call("BLMPOP", 1, 1, self.reply_key, "LEFT", "COUNT", REPLY_BATCH)
                else:
                    popped = await self._reply_redis.blmpop(1, 1, self.reply_key, direction="LEFT", count=REPLY_BATCH)
                if popped:
                    self._deliver(popped[1])
                if suspect or (self._queued and time.monotonic() >= next_check):
                    await self._fail_lost(everything=suspect)
                    suspect = False
                    next_check = time.monotonic() + LOST_CHECK_SECONDS
                if time.monotonic() >= self.levels.due:  # the pop waits at most a second
                    self.levels.apply()
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError):
                logger.warning("reply listener lost Redis; retrying in 0.5 s", exc_info=True)
                suspect = True
                await asyncio.sleep(0.5)
            except Exception:
                # A bug must not end the listener: the answers of every other request go through it.
                logger.exception("unexpected error in the reply listener; going on in 0.5 s")
                await asyncio.sleep(0.5)

    def _deliver(self, blobs: list[Any]) -> None:
        # Whatever a reply holds, the listener goes on: a stray or truncated blob must not
        # stop the delivery of every other request's answer.
        for blob in blobs:
            try:
                request_key = decode_reply_id(blob)
            except Exception:
                logger.error("dropping a malformed reply (%d bytes)", len(blob))
                continue
            future = self._waiting.get(request_key)
            if future is not None and not future.done():
                try:
                    future.set_result(decode_reply(blob))
                except Exception as exc:
                    future.set_exception(ProtocolError(500, f"malformed reply from the worker: {exc!r}"))

    async def _fail_lost(self, everything: bool) -> None:
        """Answer 503 the waiting requests whose stream entry is gone (see the module docstring)."""
        oldest = time.monotonic() - LOST_CHECK_AGE_SECONDS
        by_stream: dict[str, dict[Any, str]] = {}
        for request_key, (stream, entry, queued_at) in list(self._queued.items()):
            if everything or queued_at <= oldest:
                by_stream.setdefault(stream, {})[entry] = request_key
        if not by_stream:
            return
        gone: list[str] = []
        for stream, entries in by_stream.items():
            missing = await self._missing(keys=[stream], args=list(entries))
            gone += [entries[entry_id] for entry_id in missing if entry_id in entries]
        if not gone:
            return
        # Replies pushed before their entries were deleted are in the list by now: deliver them first.
        while True:
            popped: Any = await self._reply_redis.lmpop(1, self.reply_key, direction="LEFT", count=REPLY_BATCH)
            if not popped:
                break
            self._deliver(popped[1])
        failed = 0
        for request_key in gone:
            future = self._waiting.get(request_key)
            if future is not None and not future.done():
                future.set_exception(lost())
                failed += 1
        if failed:
            logger.warning("%d waiting request(s) lost from their queue (Redis restarted or flushed?): 503", failed)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        self.levels.apply()
        await self.redis.aclose()
        await self._reply_redis.aclose()
