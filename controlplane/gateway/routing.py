"""Rollout routing on the inference path: which arm serves a request, feedback
joined to that arm, and shadow copies of requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from controlplane.gateway.catalog import ModelEntry, VersionEntry
from controlplane.gateway.http import Scope
from controlplane.gateway.protocol import ParsedInput, ParsedRequest, ProtocolError
from controlplane.observability.recorder import Observation
from rollouts.keys import moments_key
from rollouts.splitting import choose, mirrored
from workers.wire import WireReply

if TYPE_CHECKING:
    from controlplane.gateway.app import Gateway

logger = logging.getLogger(__name__)

FEEDBACK_TTL_SECONDS = 7 * 24 * 3600
_background: set[asyncio.Task[None]] = set()


def routing_key(scope: Scope, header_name: str, key_id: str | None, request_id: str) -> str:
    wanted = header_name.encode()
    for name, value in scope["headers"]:
        if name == wanted and value:
            return value.decode("latin-1")
    # Without the header, the API key pins the client; without a key, nothing does.
    return key_id or request_id


def route(model: ModelEntry, key: str) -> tuple[str, VersionEntry] | None:
    """The arm and version serving this routing key, while a canary or experiment runs."""
    routing = model.routing
    if routing is None or not routing.arms or routing.kind == "shadow":
        return None
    arm = routing.arms[choose(routing.rollout_id, key, model.edges)]
    entry = model.versions.get(arm.version)
    return (arm.name, entry) if entry is not None else None


def in_background(coroutine: Any) -> None:
    """Run after the response is sent; keep a reference so the task is not collected."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _feedback_key(prefix: str, model: str, request_id: str) -> str:
    return f"{prefix}:fbmap:{model}:{request_id}"


async def remember_arm(
    client: aioredis.Redis, prefix: str, model: str, ids: list[str], rollout_id: int, arm: str
) -> None:
    """Let feedback for these request ids find the arm that answered them."""
    try:
        pipe = client.pipeline(transaction=False)
        for request_id in ids:
            pipe.set(_feedback_key(prefix, model, request_id), f"{rollout_id}:{arm}", ex=FEEDBACK_TTL_SECONDS)
        await pipe.execute()
    except (aioredis.RedisError, OSError):
        logger.warning("could not record the arm of request(s) %s for feedback", ids)


async def record_feedback(client: aioredis.Redis, prefix: str, model: str, body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"the feedback body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(400, 'feedback must be an object: {"id": "<request id>", "reward": <number or bool>}')
    request_id, reward = payload.get("id"), payload.get("reward")
    if not isinstance(request_id, str) or not request_id:
        raise ProtocolError(400, "feedback needs the 'id' of the inference request (its id or X-Request-ID)")
    if isinstance(reward, bool):
        reward = 1.0 if reward else 0.0
    if not isinstance(reward, int | float) or not math.isfinite(reward):
        raise ProtocolError(400, "'reward' must be a finite number, or true/false for a conversion")
    mapping_key = _feedback_key(prefix, model, request_id)
    mapping = await client.get(mapping_key)
    if mapping is None:
        raise ProtocolError(
            404,
            f"no request '{request_id}' of model '{model}' awaits feedback: feedback is joined to requests "
            "served during a canary or an experiment, for 7 days, once",
        )
    # The join is used once: a later feedback finds no mapping (404 above); two at
    # the same instant both pass the GET, and GETDEL lets only one of them count (409).
    if await client.getdel(mapping_key) is None:
        raise ProtocolError(409, f"feedback for request '{request_id}' was already recorded")
    text = mapping.decode() if isinstance(mapping, bytes) else str(mapping)
    rollout_id, _, arm = text.partition(":")
    pipe = client.pipeline(transaction=False)
    key = moments_key(prefix, int(rollout_id), arm)
    pipe.hincrby(key, "n", 1)
    pipe.hincrbyfloat(key, "sum", float(reward))
    pipe.hincrbyfloat(key, "sumsq", float(reward) * float(reward))
    pipe.expire(key, 90 * 24 * 3600)
    await pipe.execute()
    return {"id": request_id, "arm": arm, "rollout": int(rollout_id), "recorded": True}


def compare_outputs(champion: WireReply, shadow: WireReply) -> tuple[int, int, float | None]:
    """(rows agreeing on argmax, rows compared, max absolute difference) over shared outputs."""
    theirs = {name: array for name, _, array in shadow.outputs}
    agree = rows = 0
    max_diff: float | None = None
    for name, _, ours in champion.outputs:
        other = theirs.get(name)
        if other is None or other.shape != ours.shape or ours.dtype.kind not in "fiub":
            continue
        a, b = ours.astype(np.float64), other.astype(np.float64)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        max_diff = diff if max_diff is None else max(max_diff, diff)
        if a.ndim == 2 and a.shape[1] > 1 and ours.dtype.kind == "f":
            agree += int(np.sum(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
            rows += a.shape[0]
    return agree, rows, max_diff


Copy = tuple[ParsedRequest, WireReply, float]  # the request, the champion's reply, its timeout


def merge_copies(requests: list[ParsedRequest]) -> ParsedRequest | None:
    """The requests as one multi-row request (rows in order), or None when their inputs
    differ in names, datatypes or non-batch dimensions. Raw tensors are row-major, so
    joining along the batch dimension is joining their bytes (BYTES elements are
    length-prefixed one by one, so theirs join the same way)."""
    first = requests[0].inputs
    for other in requests[1:]:
        if [(i.name, i.datatype, i.shape[1:]) for i in other.inputs] != [
            (i.name, i.datatype, i.shape[1:]) for i in first
        ]:
            return None
    inputs = [
        ParsedInput(
            spec.name,
            spec.datatype,
            [sum(r.inputs[index].shape[0] for r in requests), *spec.shape[1:]],
            b"".join(r.inputs[index].raw for r in requests),
        )
        for index, spec in enumerate(first)
    ]
    return ParsedRequest(None, inputs, None)


async def shadow_run(gateway: Gateway, model: ModelEntry, shadow: VersionEntry, copies: list[Copy]) -> None:
    """Run requests on the shadow version and record how each did; their clients have their
    answers already. Several copies go as one multi-row request when the shadow has a
    batch dimension: one enqueue, one stream entry and one reply for all of them."""
    if not shadow.ready or shadow.signature is None:
        return
    merged = merge_copies([request for request, _, _ in copies]) if len(copies) > 1 else copies[0][0]
    if merged is None:
        await asyncio.gather(*(shadow_run(gateway, model, shadow, [copy]) for copy in copies))
        return
    started = time.perf_counter()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            reply = await gateway.dispatcher.submit(
                shadow.id, merged, max(timeout for _, _, timeout in copies), shadow.max_queue_size
            )
        except ProtocolError as exc:
            reply = WireReply("", status=exc.status, error=exc.message)
        if reply.status not in (200, 503, 504) and len(copies) > 1:
            # One copy's input may have failed them all: each gets its own outcome. A
            # busy or slow shadow (503, 504) is not asked twice.
            await asyncio.gather(*(shadow_run(gateway, model, shadow, [copy]) for copy in copies))
            return
        total_ms = (time.perf_counter() - started) * 1000
        offset = 0
        for request, champion, _ in copies:
            rows = request.rows
            obs = Observation(model.name, str(shadow.number), "shadow", reply.status, total_ms)
            obs.queue_ms, obs.compute_ms, obs.batch_size = reply.queue_ms, reply.compute_ms, reply.batch_size
            agreement: tuple[int, int, float | None] = (0, 0, None)
            if reply.status == 200:
                part = reply if len(copies) == 1 else _rows_of(reply, offset, rows)
                agreement = compare_outputs(champion, part)
            offset += rows
            gateway.recorder.record(obs)
            gateway.recorder.record_agreement(model.name, str(shadow.number), *agreement)


def _rows_of(reply: WireReply, offset: int, rows: int) -> WireReply:
    outputs = [(name, datatype, array[offset : offset + rows]) for name, datatype, array in reply.outputs]
    return WireReply(reply.request_id, outputs=outputs)


class ShadowCopies:
    """Shadow copies, held back and sent together.

    A copy sent the moment its champion answered competes for the same cores as
    the client's next request. Held for up to `delay` seconds (or until `size`
    wait), the copies of one shadow version go to its worker as one multi-row
    request, cut at the version's max batch size: one enqueue, one onnxruntime
    run and one reply, far less work in between clients' requests. The shadow's
    recorded latency starts when its copies are sent, not when they are held.
    """

    def __init__(self, gateway: Gateway, delay: float = 0.05, size: int = 32) -> None:
        self._gateway = gateway
        self._delay = delay
        self._size = size
        self._held: list[tuple[ModelEntry, VersionEntry, Copy]] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(
        self, model: ModelEntry, shadow: VersionEntry, request: ParsedRequest, reply: WireReply, timeout_s: float
    ) -> None:
        self._held.append((model, shadow, (request, reply, timeout_s)))
        if len(self._held) >= self._size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        groups: dict[int, tuple[ModelEntry, VersionEntry, list[list[Copy]]]] = {}
        for model, shadow, copy in held:
            _, _, chunks = groups.setdefault(shadow.id, (model, shadow, [[]]))
            batchable = bool(shadow.signature and shadow.signature.get("batch_dim"))
            chunk = chunks[-1]
            rows = sum(request.rows for request, _, _ in chunk)
            if chunk and (not batchable or rows + copy[0].rows > shadow.max_batch_size):
                chunk = []
                chunks.append(chunk)
            chunk.append(copy)
        for model, shadow, chunks in groups.values():
            for chunk in chunks:
                in_background(shadow_run(self._gateway, model, shadow, chunk))


def should_mirror(model: ModelEntry, key: str) -> VersionEntry | None:
    routing = model.routing
    if routing is None or routing.kind != "shadow" or routing.shadow is None:
        return None
    if not mirrored(routing.rollout_id, key, routing.shadow_fraction):
        return None
    return model.versions.get(routing.shadow.version)
