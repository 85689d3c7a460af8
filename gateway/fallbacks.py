"""What answers when a model's serving version fails: its fallback chain
(registry/fallback_policy.py), run step by step within the request's deadline.

Which failures count: `timeout` (no answer within the time the version had),
`model_error` (the worker could not run the request, or could not load the version)
and `overload` (the queue was full, the worker's inference memory was taken, Redis
could not take the request). A request the client got wrong (400 from validation,
401/403/404, 429 from its key's rate limit) never falls back: another model would
refuse it too, and a cached or human answer would hide the client's mistake.

The serving version's request is off its queue or answered before the chain starts
(gateway/dispatch.py deletes a timed-out entry, and drops any late reply), so a request
is never answered twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dataplane.priority import DEFAULT_LEVEL
from dataplane.wire import WireReply
from gateway.catalog import ModelEntry, RegistryUnavailable, VersionEntry
from gateway.dispatch import Dispatcher
from gateway.protocol import ParsedRequest, ProtocolError
from registry.fallback_policy import FLOOR_MS, FallbackPolicy, FallbackStep

logger = logging.getLogger(__name__)


class AnswerStore(Protocol):
    """Where good answers are kept for the `cache` step (gateway/response_cache.py)."""

    async def get(self, key: str) -> WireReply | None: ...

    async def put(self, key: str, reply: WireReply, ttl_s: float, label: str = "") -> bool: ...


@dataclass(frozen=True)
class FallbackAnswer:
    kind: str  # cache, version, human_review
    reason: str  # the failure that triggered it
    reply: WireReply | None  # None: human review, no outputs
    version: int | None  # the version whose outputs these are; None for human review
    status: int = 200


def failure_of(exc: ProtocolError) -> str:
    """Which trigger a failure is (timeout, model_error, overload), or "" for the client's own mistakes."""
    return exc.failure


def _fits(request: ParsedRequest, entry: VersionEntry) -> str | None:
    """Why this request cannot run on `entry`, or None (its signature was checked for the served model's
    when the policy was set; a different production version since may have changed the inputs)."""
    signature = entry.signature
    if not entry.ready or signature is None:
        return f"version {entry.number} is {entry.status}"
    inputs = {t["name"]: t for t in signature["inputs"]}
    if set(inputs) != {i.name for i in request.inputs}:
        return f"version {entry.number} takes inputs {sorted(inputs)}"
    for given in request.inputs:
        spec = inputs[given.name]
        if spec["datatype"] != given.datatype or len(spec["shape"]) != len(given.shape):
            return f"input '{given.name}' does not match version {entry.number}"
        if any(e != -1 and g != e for g, e in zip(given.shape, spec["shape"], strict=True)):
            return f"input '{given.name}' has shape {given.shape}, version {entry.number} takes {spec['shape']}"
    if signature.get("batch_dim") and request.rows > entry.max_batch_size:
        return f"a batch of {request.rows} is over version {entry.number}'s max batch size"
    if request.outputs is not None:
        names = {t["name"] for t in signature["outputs"]}
        missing = [name for name in request.outputs if name not in names]
        if missing:
            return f"version {entry.number} has no output {missing[0]!r}"
    return None


class Fallbacks:
    def __init__(
        self,
        dispatcher: Dispatcher,
        models: Callable[[str], Awaitable[ModelEntry | None]],
        answers: AnswerStore | None,
        answer_key: Callable[[str, ParsedRequest], str] | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.models = models  # the catalog's look-up, for a fallback version of another model
        self.answers = answers
        self.answer_key = answer_key

    async def answer(
        self,
        model: ModelEntry,
        policy: FallbackPolicy,
        failed: VersionEntry,
        request: ParsedRequest,
        reason: str,
        deadline: float,
        level: str = DEFAULT_LEVEL,
    ) -> FallbackAnswer | None:
        """The first step of the chain that answers before `deadline` (time.monotonic()), or None;
        a fallback version takes the request at its client's priority `level`."""
        for step in policy.chain:
            try:
                found = await self._step(model, step, failed, request, reason, deadline, level)
            except ProtocolError as exc:  # the fallback version failed too: the next step
                logger.info("%s: fallback %s failed: %s", model.name, step.describe(model.name), exc.message)
                continue
            if found is not None:
                return found
        return None

    async def _step(
        self,
        model: ModelEntry,
        step: FallbackStep,
        failed: VersionEntry,
        request: ParsedRequest,
        reason: str,
        deadline: float,
        level: str,
    ) -> FallbackAnswer | None:
        if step.kind == "human_review":
            return FallbackAnswer("human_review", reason, None, None, step.status)
        if step.kind == "cache":
            if self.answers is None or self.answer_key is None:
                return None
            stored = await self.answers.get(self.answer_key(model.name, request))
            if stored is None:
                return None
            # A kept answer's label (in the request id's place) names the version that computed it.
            number = int(stored.request_id) if stored.request_id.isdigit() else None
            return FallbackAnswer("cache", reason, stored, number)
        entry = await self._version(model, step)
        if entry is None or entry.id == failed.id:
            return None
        unfit = _fits(request, entry)
        if unfit is not None:
            logger.info("%s: fallback %s skipped: %s", model.name, step.describe(model.name), unfit)
            return None
        # What is left of the client's deadline, never less than the floor.
        left = max(deadline - time.monotonic(), FLOOR_MS / 1000)
        reply = await self.dispatcher.submit(entry.id, request, left, entry.max_queue_size, level=level)
        if reply.status != 200:
            raise ProtocolError(reply.status, reply.error)
        return FallbackAnswer("version", reason, reply, entry.number)

    async def _version(self, model: ModelEntry, step: FallbackStep) -> VersionEntry | None:
        owner: ModelEntry | None = model
        if step.model is not None and step.model != model.name:
            try:
                owner = await self.models(step.model)
            except RegistryUnavailable:
                return None
        if owner is None:
            return None
        entry = owner.versions.get(step.version)
        return entry if entry is not None and entry.ready else None

    async def remember(
        self, model: str, policy: FallbackPolicy, request: ParsedRequest, reply: WireReply, version: int
    ) -> None:
        """Keep a good answer for the `cache` step (after the client has it: off the request's path)."""
        step = policy.caches_answers
        if step is None or self.answers is None or self.answer_key is None:
            return
        await self.answers.put(self.answer_key(model, request), reply, step.ttl_seconds, label=str(version))


def response_parameters(answer: FallbackAnswer, arm: str) -> dict[str, Any]:
    parameters: dict[str, Any] = {"arm": arm, "fallback": answer.kind, "fallback_reason": answer.reason}
    if answer.kind == "human_review":
        parameters["human_review_required"] = True
    return parameters


def outputs_of(answer: FallbackAnswer, wanted: Sequence[str] | None) -> list[Any]:
    if answer.reply is None:
        return []
    return [o for o in answer.reply.outputs if wanted is None or o[0] in wanted]
