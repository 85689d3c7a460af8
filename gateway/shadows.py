"""Shadow copies: requests mirrored to a shadow version after their client has the
champion's answer, compared with it, and recorded; never part of the client's latency.
They queue at the lowest priority level: they yield to every client's request."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np

from dataplane.priority import SHADOW_LEVEL
from dataplane.wire import WireReply
from gateway.background import in_background
from gateway.catalog import ModelEntry, VersionEntry
from gateway.dispatch import Dispatcher
from gateway.protocol import ParsedInput, ParsedRequest, ProtocolError
from observability.recorder import Observation, Recorder


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


async def shadow_run(
    dispatcher: Dispatcher, recorder: Recorder, model: ModelEntry, shadow: VersionEntry, copies: list[Copy]
) -> None:
    """Run requests on the shadow version and record how each did; their clients have their
    answers already. Several copies go as one multi-row request when the shadow has a
    batch dimension: one enqueue, one stream entry and one reply for all of them."""
    if not shadow.ready or shadow.signature is None:
        return
    merged = merge_copies([request for request, _, _ in copies]) if len(copies) > 1 else copies[0][0]
    if merged is None:
        await asyncio.gather(*(shadow_run(dispatcher, recorder, model, shadow, [copy]) for copy in copies))
        return
    started = time.perf_counter()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            reply = await dispatcher.submit(
                shadow.id, merged, max(timeout for _, _, timeout in copies), shadow.max_queue_size, SHADOW_LEVEL
            )
        except ProtocolError as exc:
            reply = WireReply("", status=exc.status, error=exc.message)
        if reply.status not in (200, 503, 504) and len(copies) > 1:
            # One copy's input may have failed them all: each gets its own outcome. A
            # busy or slow shadow (503, 504) is not asked twice.
            await asyncio.gather(*(shadow_run(dispatcher, recorder, model, shadow, [copy]) for copy in copies))
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
            recorder.record(obs)
            recorder.record_agreement(model.name, str(shadow.number), *agreement)


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

    def __init__(self, dispatcher: Dispatcher, recorder: Recorder, delay: float = 0.05, size: int = 32) -> None:
        self._dispatcher = dispatcher
        self._recorder = recorder
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
                in_background(shadow_run(self._dispatcher, self._recorder, model, shadow, chunk))
