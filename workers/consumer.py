"""One model version's batching loop inside a worker: read a batch of requests
from the version's Redis streams (one per priority level, highest first:
workers/intake.py), run it, reply, acknowledge.

Several workers read the same streams through one consumer group, so they share
its queue. Requests stay pending until answered; a live worker claims those a
dead worker left behind (XAUTOCLAIM) and answers them, or answers 504 when their
deadline has already passed. No Django imports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from dataplane.keys import RedisKeys
from dataplane.link import Command
from dataplane.wire import MalformedRequest, WireReply, WireRequest, decode_request, encode_reply
from observability import tracing
from registry import inference_memory
from registry.pipelines import StageDeadlineExceeded, StageFailed
from workers.batching import Batch, concatenate, plan_batches, split
from workers.intake import Entry, Intake
from workers.pipeline import LoadedPipeline, ServedStage
from workers.runtime import LoadedSession, RunMemoryExceeded

logger = logging.getLogger(__name__)

REPLY_TTL_SECONDS = 60
# Outputs at least this large may hold arena regions past their run's own
# shrink: give them back once the replies are sent (registry/inference_memory.py).
RELEASE_AFTER_OUTPUT_BYTES = 8 * 1024 * 1024
READ_BLOCK_MS = 200
RECLAIM_EVERY_SECONDS = 0.25

# (reply address, stream, entry id, reply): an entry to answer (when it says where) and acknowledge.
Finished = tuple[str | None, str, bytes, WireReply | None]


@dataclass(frozen=True)
class ServedVersion:
    """What a worker needs to serve one version (read from the registry)."""

    id: int
    model: str
    number: int
    signature: dict[str, Any]
    artifact: str
    max_batch_size: int
    max_queue_delay_ms: float
    preferred_batch_sizes: tuple[int, ...]
    execution_provider: str
    warmup: bool
    intra_op_threads: int = 0
    # The target of the `production` alias: loaded at once, whatever `warmup` says,
    # so that moving the alias (or a worker restart) never leaves it cold.
    production: bool = False
    # A pipeline version's stages and outputs (registry/pipelines.py); empty for a model.
    stages: tuple[ServedStage, ...] = ()
    pipeline_outputs: tuple[tuple[str, str], ...] = ()

    @property
    def is_pipeline(self) -> bool:
        return bool(self.stages)

    @property
    def preload(self) -> bool:
        return self.warmup or self.production

    @property
    def session_options(self) -> tuple[Any, ...]:
        """The settings a loaded session was built with: a change means loading it again."""
        if self.stages:
            return tuple((s.version_id, s.execution_provider, s.intra_op_threads) for s in self.stages)
        return self.execution_provider, self.intra_op_threads

    @property
    def label(self) -> str:
        return f"{self.model} v{self.number}"


class VersionConsumer(threading.Thread):
    def __init__(
        self,
        version: ServedVersion,
        client: redis.Redis,
        keys: RedisKeys,
        worker_name: str,
        get_session: Callable[[ServedVersion], LoadedSession | LoadedPipeline],
        reclaim_idle_ms: int,
        on_batch: Callable[[ServedVersion, int], None] | None = None,
    ) -> None:
        super().__init__(name=f"turnout-{version.model}-v{version.number}", daemon=True)
        self.version = version
        self.redis = client
        self.intake = Intake(client, keys.request_streams(version.id), worker_name)
        self.worker_name = worker_name
        self.get_session = get_session
        self.reclaim_idle_ms = reclaim_idle_ms
        self.on_batch = on_batch
        self._stop_event = threading.Event()
        self._output_bytes = 0  # of the batches since memory was last released

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        self.intake.ensure_groups()
        if self.version.preload:
            try:
                self.get_session(self.version)
            except Exception:
                logger.exception("%s: warm-up failed; it will load on first use", self.version.label)
        next_reclaim = 0.0
        version = self.version
        while not self._stop_event.is_set():
            try:
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + RECLAIM_EVERY_SECONDS
                    self._reclaim()
                entries = self.intake.next(version.max_batch_size, READ_BLOCK_MS)
                if not entries:
                    continue
                # More than one waiting request means clients are concurrent:
                # linger up to the queue delay to fill the batch. A lone request
                # on an idle worker runs at once.
                if 1 < len(entries) < version.max_batch_size and version.max_queue_delay_ms > 0:
                    more = self.intake.next(
                        version.max_batch_size - len(entries), max(1, int(version.max_queue_delay_ms))
                    )
                    entries = self.intake.ordered(entries + more) if more else entries
                self.process(entries)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost a stream (a restart without persistence, a flush):
                    # create the streams and group again rather than fail every request.
                    logger.warning("%s: stream or consumer group missing; recreating it", version.label)
                    try:
                        self.intake.ensure_groups()
                    except redis.RedisError:
                        self._stop_event.wait(0.5)
                else:
                    logger.warning("%s: Redis error; retrying in 0.5 s", version.label, exc_info=True)
                    self._stop_event.wait(0.5)
            except redis.RedisError:
                logger.warning("%s: Redis error; retrying in 0.5 s", version.label, exc_info=True)
                self._stop_event.wait(0.5)
            except Exception:
                logger.exception("%s: unexpected error in the batching loop", version.label)
                self._stop_event.wait(0.5)
        self.intake.close()  # the loop's own connection (dataplane/link.py)

    def _reclaim(self) -> None:
        """Take over requests another consumer read but never answered (it died)."""
        live = self.intake.reclaim(self.reclaim_idle_ms, self.version.max_batch_size)
        if live:
            logger.warning("%s: took over %d unanswered request(s)", self.version.label, len(live))
            self.process(live)

    def process(self, entries: list[Entry]) -> None:
        """Answer entries, taken highest level first: batches keep that order."""
        now_ms = time.time() * 1000
        runnable: list[WireRequest] = []
        finished: list[Finished] = []
        for stream, entry_id, fields in entries:
            try:
                request = decode_request(entry_id, fields, stream)
            except MalformedRequest as exc:
                # Answered at once when it says where to, so its client does not wait out its deadline;
                # acknowledged and deleted either way, so no worker takes it over again.
                logger.error("%s: cannot decode entry %r: %s", self.version.label, entry_id, exc)
                reply = None
                if exc.reply_to is not None and exc.request_id is not None:
                    reply = WireReply(exc.request_id, 400, f"the worker could not decode this request: {exc}"[:600])
                finished.append((exc.reply_to, stream, entry_id, reply))
                continue
            if request.deadline_ms <= now_ms:
                reply = WireReply(request.request_id, 504, "the deadline passed before the request could run")
                finished.append((request.reply_to, stream, entry_id, reply))
            else:
                runnable.append(request)
        if finished:
            self._send(finished)
        if not runnable:
            return
        try:
            loaded = self.get_session(self.version)
        except Exception as exc:
            logger.exception("%s: cannot load", self.version.label)
            message = f"model '{self.version.model}' version {self.version.number} could not be loaded: {exc}"
            self._send([(r.reply_to, r.stream, r.entry_id, WireReply(r.request_id, 503, message)) for r in runnable])
            return
        signature = self.version.signature
        for batch in plan_batches(
            runnable, self.version.max_batch_size, bool(signature.get("batch_dim")), self.version.preferred_batch_sizes
        ):
            started_ms = time.time() * 1000
            try:
                replies = self._run(loaded, batch)
            except Exception:
                # A bug, not the input: still an answer, and the entries acknowledged.
                logger.exception("%s: a batch failed", self.version.label)
                error = "the worker failed to run this request; its log has the details"
                replies = [WireReply(r.request_id, 500, error) for r in batch.requests]
            self._send(
                [(r.reply_to, r.stream, r.entry_id, reply) for r, reply in zip(batch.requests, replies, strict=True)]
            )
            if tracing.enabled():
                self._trace(batch, replies, started_ms)
        # The replies and the outputs behind them are gone by now.
        if self._output_bytes >= RELEASE_AFTER_OUTPUT_BYTES:
            self._output_bytes = 0
            inference_memory.release()

    def _run(self, loaded: LoadedSession | LoadedPipeline, batch: Batch) -> list[WireReply]:
        started_wall = time.time() * 1000
        started = time.perf_counter()
        stages: list[tuple[str, float]] = []
        try:
            feeds = concatenate(batch, loaded.input_names)
            if isinstance(loaded, LoadedPipeline):
                # Stages stop at their own deadline, and all of them when the last request gives up.
                latest = max(r.deadline_ms for r in batch.requests)
                outputs, timings = loaded.run_stages(feeds, time.monotonic() + (latest - started_wall) / 1000)
                stages = [(t.stage, t.ms) for t in timings]
            else:
                outputs = loaded.run(feeds)
        except StageDeadlineExceeded as late:
            logger.warning("%s: %s", self.version.label, late)
            return [WireReply(r.request_id, 504, str(late)) for r in batch.requests]
        except Exception as exc:
            if len(batch.requests) > 1:
                # One request's values can break a run (an index out of range, or a
                # size that does not fit in memory, say): run each alone so the
                # others still get their answers.
                return [
                    self._run(loaded, Batch([r], [rows]))[0] for r, rows in zip(batch.requests, batch.rows, strict=True)
                ]
            return [self._failure(batch.requests[0], exc)]
        self._output_bytes += sum(getattr(output, "nbytes", 0) for output in outputs)
        compute_ms = (time.perf_counter() - started) * 1000
        if self.on_batch is not None:
            self.on_batch(self.version, batch.size)
        replies = []
        finished_wall = started_wall + compute_ms
        for request, parts in zip(batch.requests, split(batch, outputs), strict=True):
            if stages and request.deadline_ms < finished_wall:
                replies.append(WireReply(request.request_id, 504, _late_in(request, started_wall, stages)))
                continue
            wanted = request.outputs
            selected = [
                (name, datatype, np.asarray(part))
                for name, datatype, part in zip(loaded.output_names, loaded.output_datatypes, parts, strict=True)
                if wanted is None or name in wanted
            ]
            replies.append(
                WireReply(
                    request.request_id,
                    outputs=selected,
                    batch_size=batch.size,
                    queue_ms=max(0.0, started_wall - request.enqueued_ms),
                    compute_ms=compute_ms,
                    provider=loaded.provider,
                    worker=self.worker_name,
                    stages=stages,
                )
            )
        return replies

    def _trace(self, batch: Batch, replies: list[WireReply], started_ms: float) -> None:
        """The spans of the batch's requests sampled for tracing, once they have their answers."""
        version = self.version
        attributes: dict[str, str | int] = {
            "turnout.model": version.model,
            "turnout.version": str(version.number),
            "turnout.worker": self.worker_name,
            "turnout.batch_size": batch.size,
        }
        for request, reply in zip(batch.requests, replies, strict=True):
            if request.traceparent is not None:
                # A pipeline's stages ran back to back from the batch's start; a model's one run is "compute".
                stages = reply.stages or [("compute", reply.compute_ms)]
                tracing.record_worker_spans(
                    request.traceparent, request.enqueued_ms, started_ms, stages, attributes, reply.status, reply.error
                )

    def _failure(self, request: WireRequest, exc: Exception) -> WireReply:
        """The answer to a request that could not run alone."""
        where = ""
        if isinstance(exc, StageFailed):
            where = f"stage '{exc.stage}': "
            exc = exc.error if isinstance(exc.error, Exception) else exc
        reply = self._failure_of(request, exc)
        if where:
            reply.error = where + reply.error
        return reply

    def _failure_of(self, request: WireRequest, exc: Exception) -> WireReply:
        if isinstance(exc, RunMemoryExceeded):
            if exc.transient:
                logger.warning("%s: out of inference memory while other runs were in flight", self.version.label)
                message = (
                    f"the worker's memory for inference is in use by other requests "
                    f"(a buffer of {exc.requested} bytes did not fit); retry"
                )
                return WireReply(request.request_id, 503, message)
            limit = f"the limit of {exc.limit} bytes" if exc.limit else "what the worker has"
            logger.warning("%s: refused an input that needs more than %s", self.version.label, limit)
            message = (
                f"the model could not run on this input: it needs more memory than a worker allows for "
                f"inference (it asked for a buffer of {exc.requested} bytes; {limit} applies to all runs "
                "in flight together); send a smaller input"
            )
            return WireReply(request.request_id, 400, message)
        message = " ".join(str(exc).split())[:500]
        return WireReply(request.request_id, 400, f"the model could not run on this input: {message}")

    def _send(self, finished: list[Finished]) -> None:
        """Replies and acknowledgements in one round trip; acknowledged only once answered.
        (Each reply is pushed before its entry is deleted: a gateway that finds an entry
        gone can rely on its reply being in its list already, see gateway/dispatch.py.)"""
        replies: list[Command] = []
        for reply_to, _, _, reply in finished:
            if reply_to is not None and reply is not None:
                replies += [("RPUSH", reply_to, encode_reply(reply)), ("EXPIRE", reply_to, REPLY_TTL_SECONDS)]
        acknowledgements = self.intake.acknowledgements((stream, entry_id) for _, stream, entry_id, _ in finished)
        link = self.intake.link
        if link is not None:
            link.pipeline(replies + acknowledgements)
            return
        # A Redis Cluster: its pipeline sends each node its commands separately, in no set
        # order, so the replies must have landed before the deletes are sent.
        for commands in (replies, acknowledgements):
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute()


def _late_in(request: WireRequest, started_wall: float, stages: list[tuple[str, float]]) -> str:
    """Which stage was running when the request's deadline passed."""
    at = started_wall
    for stage, ms in stages:
        at += ms
        if request.deadline_ms < at:
            return f"the request's deadline passed during stage '{stage}'"
    return "the request's deadline passed while the pipeline ran"
