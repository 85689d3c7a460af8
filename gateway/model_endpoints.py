"""Model metadata, readiness and inference, whichever transport asked: the rules of the
Open Inference Protocol's model endpoints in one place (authentication, scope, rate limit,
catalog, routing, validation, response cache, enqueue, fallbacks, recording).

Each request becomes one `Call`, which carries what the steps after routing need (the
request's scope, the response headers so far, the key, the model and version, the arm).
The transports build it and turn its outcome into their answer: HTTP in
gateway/http_models.py, gRPC in gateway/grpc_server.py. A `Call`'s `scope` is the ASGI scope
for HTTP; gRPC builds one of the same shape from its metadata (headers, client, method, path),
so authentication, routing keys, tracing and the access log read both alike. The transport
also gives the `parse` function that turns its body into a `ParsedRequest` (both end in
gateway/protocol.py's `parse_payload`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from accounts.services import KeyRecord
from controlplane.redis_client import redis_keys
from dataplane.liveness import read_served_by
from dataplane.priority import DEFAULT_LEVEL
from dataplane.wire import WireReply
from gateway import routing
from gateway.answers import CACHE_HEADER, Served, access_log, failure_of_reply, server_timing
from gateway.auth import KeyAuth
from gateway.background import in_background
from gateway.catalog import Catalog, ModelEntry, RegistryUnavailable, VersionEntry
from gateway.dispatch import Dispatcher
from gateway.fallbacks import Fallbacks, outputs_of, response_parameters
from gateway.feedback import Feedback, remember_arm
from gateway.http import Scope, header
from gateway.protocol import ParsedRequest, ProtocolError
from gateway.response_cache import ResponseCache, digest
from gateway.shadows import ShadowCopies
from observability import tracing
from observability.recorder import Observation, Recorder
from registry.models import NAME_VALIDATOR

logger = logging.getLogger(__name__)
RETRY = [(b"retry-after", b"5")]

PLATFORM = "onnx_onnxv1"
PIPELINE_PLATFORM = "turnout_pipeline"  # stages run back to back in one worker, as Triton's "ensemble"
MODEL_NAME = re.compile(NAME_VALIDATOR.regex)
REJECT_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited", 503: "unavailable"}
Headers = list[tuple[bytes, bytes]]
# The transport's body, checked against the version's signature and max batch size.
Parser = Callable[[dict[str, Any], int], Awaitable[ParsedRequest]]


@dataclass(slots=True)
class Call:
    """One request to a model endpoint, filled in as it is routed."""

    scope: Scope  # ASGI's, or gRPC's metadata in the same shape (see the module docstring)
    request_id: str
    headers: Headers  # response headers (gRPC: trailing metadata) so far
    parse: Parser | None = None  # the transport's body parser; inference only
    key: KeyRecord | None = None
    model: ModelEntry | None = None
    entry: VersionEntry | None = None
    arm: str = "champion"
    routed_key: str = ""  # what chose the arm; empty when no rollout routed it
    trace: tracing.RequestTrace | None = None  # an inference's server span, while tracing is on
    request: ParsedRequest | None = None  # once validated
    deadline: float = 0.0  # time.monotonic() at which the client's timeout ends, once validated
    level: str = DEFAULT_LEVEL  # the key's priority level (dataplane/priority.py)
    obs: Observation | None = None  # an inference's figures, once it has an outcome


@dataclass
class ModelEndpoints:
    catalog: Catalog
    keys: KeyAuth
    dispatcher: Dispatcher
    recorder: Recorder
    shadows: ShadowCopies
    require_key: bool
    worker_ttl_seconds: float = field(default_factory=lambda: float(settings.TURNOUT["WORKER_TTL_SECONDS"]))
    feedbacks: Feedback = field(init=False)
    fallbacks: Fallbacks = field(init=False)
    cache: ResponseCache = field(init=False)

    def __post_init__(self) -> None:
        max_abs = float(settings.TURNOUT["FEEDBACK_MAX_ABS_REWARD"])
        self.feedbacks = Feedback(self.dispatcher.redis, self.dispatcher.keys, max_abs)
        conf = settings.TURNOUT
        self.cache = ResponseCache(
            self.dispatcher.redis,
            self.dispatcher.keys,
            int(conf["RESPONSE_CACHE_MAX_BYTES"]),
            int(conf["RESPONSE_CACHE_MAX_ENTRY_BYTES"]),
        )
        # The chain's kept answers share the response cache's store and memory cap, under their own keys.
        keys = self.dispatcher.keys
        self.fallbacks = Fallbacks(
            self.dispatcher,
            self.catalog.get,
            self.cache,
            lambda model, request: keys.fallback_answer(model, digest(request)),
        )

    def call(self, scope: Scope, parse: Parser | None = None) -> Call:
        request_id = _request_id(scope)
        return Call(scope, request_id, [(b"x-request-id", request_id.encode())], parse)

    async def run(self, call: Call, name: str, version: str | None, action: str) -> Any:
        """The answer to `action` ("" metadata, "ready", "infer", "feedback") on a model: a JSON-shaped
        dict, or for "infer" a `Served`; ProtocolError for every refusal. After sending an
        inference's answer the transport calls `finish`."""
        if action == "infer" and tracing.enabled():
            return await self._traced(call, name, version)
        return await self._serve(call, name, version, action)

    async def _traced(self, call: Call, name: str, version: str | None) -> Any:
        """An inference under its server span, which ends with the answer's status, error or not."""
        trace = call.trace = tracing.start_request(name, version is not None, call.request_id, call.scope["headers"])
        if trace is None:  # turned off meanwhile
            return await self._serve(call, name, version, "infer")
        # Also when not sampled: the id exists, and the client may send it on as its traceparent.
        call.headers.append((tracing.TRACE_ID_HEADER, trace.trace_id.encode()))
        status, error = 500, "internal error"
        try:
            served = await self._serve(call, name, version, "infer")
            status, error = 200, ""
            return served
        except ProtocolError as exc:
            status, error = exc.status, exc.message
            raise
        finally:
            trace.finish(status, error, call.entry.number if call.entry else None, call.arm)

    async def _serve(self, call: Call, name: str, version: str | None, action: str) -> Any:
        scope = call.scope
        try:
            if self.require_key:
                with tracing.stage(call.trace, "authenticate"):
                    call.key = await self._authorize(call, name, action)
            call.model = await self.model(name)
            if action == "feedback":
                return None  # the transport reads the body and calls `feedback`
            call.entry = routing.named_version(call.model, version)
        except ProtocolError as exc:
            self.recorder.reject(REJECT_REASONS.get(exc.status, "invalid"))
            exc.headers = [*call.headers, *exc.headers]
            raise
        if action == "infer":
            call.arm = "pinned" if version else "champion"
            if version is None and call.model.routing is not None:
                call.routed_key = routing.routing_key(
                    scope, call.model.routing.routing_header, call.key.public_id if call.key else None, call.request_id
                )
                routed = routing.route(call.model, call.routed_key)
                if routed is not None:
                    call.arm, call.entry = routed
            return await self.infer(call)
        if action == "ready":
            return await self.ready(call)
        return await self.metadata(call)

    async def _authorize(self, call: Call, name: str, action: str) -> KeyRecord:
        needed = "infer" if action in ("infer", "feedback") else "read"
        # An inference is rate-limited in the same Redis script that enqueues it (_run).
        return await self.authorize(call, name, needed, limit=action != "infer")

    async def authorize(self, call: Call, name: str | None, needed: str, limit: bool = True) -> KeyRecord:
        """The request's key, if it may act on model `name` (None: no model in particular) with the
        `needed` action; counted against its rate limit when `limit`."""
        key = await self.keys.authenticate(call.scope)
        if name is not None and not key.allows_model(name):
            # The same answer as for a model that does not exist: a key's
            # scope must not reveal which other models are deployed.
            raise ProtocolError(404, f"unknown model '{name}'")
        if needed not in key.actions:
            raise ProtocolError(403, f"this API key does not have the '{needed}' scope")
        if limit:
            call.headers += await self.keys.rate_limit(key)
        return key

    async def model(self, name: str) -> ModelEntry:
        if not MODEL_NAME.match(name):
            # Not a name the registry could hold: no look-up at all.
            raise ProtocolError(404, f"unknown model {name!r}")
        try:
            model = await self.catalog.get(name)
        except RegistryUnavailable as exc:
            raise ProtocolError(503, f"the model registry is unavailable: {exc}", [(b"retry-after", b"2")]) from None
        if model is None:
            raise ProtocolError(404, f"unknown model '{name}'")
        return model

    async def feedback(self, call: Call, body: bytes) -> dict[str, Any]:
        """`POST /v2/models/{name}/feedback {"id": ..., "reward": ...}`: an outcome joined to the arm that served it."""
        assert call.model is not None
        return await self.feedbacks.record(call.model.name, body, call.key.public_id if call.key else "")

    async def metadata(self, call: Call) -> dict[str, Any]:
        model, entry = _routed(call)
        signature = routing.require_ready(model, entry)
        providers = await self._providers(entry)
        parameters: dict[str, Any] = {
            "version": str(entry.number),
            "max_batch_size": entry.max_batch_size if signature["batch_dim"] else 0,
            "execution_providers": providers,
        }
        if entry.stages:
            parameters["stages"] = list(entry.stages)
        body = {
            "name": model.name,
            "versions": [str(n) for n, v in sorted(model.versions.items()) if v.ready],
            "platform": PIPELINE_PLATFORM if entry.stages else PLATFORM,
            "inputs": signature["inputs"],
            "outputs": signature["outputs"],
            "parameters": parameters,
        }
        return body

    async def ready(self, call: Call) -> dict[str, Any]:
        model, entry = _routed(call)
        routing.require_ready(model, entry)
        providers = await self._providers(entry)
        if not providers:
            raise ProtocolError(503, f"no live worker serves model '{model.name}' version {entry.number}", RETRY)
        return {"name": model.name, "version": str(entry.number), "ready": True, "execution_providers": providers}

    async def _providers(self, entry: VersionEntry) -> dict[str, str]:
        """worker name -> execution provider, for the live workers serving this version; 503 while
        Redis is unreachable (nothing could be queued either), never a 500."""
        try:
            return await read_served_by(self.dispatcher.redis, redis_keys(), entry.id, self.worker_ttl_seconds)
        except (RedisError, OSError) as exc:
            raise ProtocolError(
                503, f"Redis is unreachable, so no worker of version {entry.number} can be reached: {exc}", RETRY
            ) from exc

    async def infer(self, call: Call) -> Served:
        model, entry = _routed(call)
        started = time.perf_counter()
        obs = call.obs = Observation(model.name, str(entry.number), call.arm, 200, 0.0)
        try:
            try:
                served = await self._run(call, obs)
            except ProtocolError as exc:
                served = await self._fall_back(call, obs, exc)
        except ProtocolError as exc:
            obs.code = exc.status
            obs.total_ms = (time.perf_counter() - started) * 1000
            if not obs.validation_ms and exc.status in (400, 413, 415):
                obs.validation_ms = obs.total_ms  # refused while validating
            self.recorder.record(obs)
            access_log(call.scope, call.request_id, obs)
            exc.headers = [*call.headers, (b"x-turnout-arm", call.arm.encode()), *exc.headers]
            raise
        obs.total_ms = (time.perf_counter() - started) * 1000
        self.recorder.record(obs)
        access_log(call.scope, call.request_id, obs)
        call.headers += [
            (b"x-turnout-model-version", str(served.version).encode()),
            (b"x-turnout-arm", call.arm.encode()),
            (b"x-turnout-batch-size", str(served.reply.batch_size).encode()),
            (b"server-timing", server_timing(obs).encode()),
        ]
        if obs.fallback:
            call.headers.append((b"x-turnout-fallback", obs.fallback.encode()))
            call.headers.append((b"x-turnout-fallback-reason", obs.fallback_reason.encode()))
        return served

    def finish(self, call: Call, served: Served) -> None:
        """Once the client has its answer (nothing here adds to its latency): the fallback
        chain's kept answer, the arm for feedback, the shadow copy."""
        obs = call.obs
        if obs is not None and not obs.fallback:
            self._after(call, served, keep=obs.cache != "hit")

    async def _fall_back(self, call: Call, obs: Observation, exc: ProtocolError) -> Served:
        """The model's fallback chain's answer to a failure it covers; `exc` again when none answers."""
        model, entry = _routed(call)
        policy = model.fallback
        request = call.request
        if policy is None or request is None or exc.failure not in policy.on:
            raise exc
        with tracing.stage(call.trace, "fallback"):
            answer = await self.fallbacks.answer(model, policy, entry, request, exc.failure, call.deadline, call.level)
        if answer is None:
            raise exc
        obs.fallback, obs.fallback_reason, obs.code = answer.kind, answer.reason, answer.status
        reply = answer.reply or WireReply(call.request_id)
        version = answer.version if answer.version is not None else entry.number
        parameters = response_parameters(answer, call.arm)
        outputs = outputs_of(answer, request.outputs)
        return Served(request, reply, model.name, outputs, parameters, 0.0, version, answer.status)

    def _after(self, call: Call, served: Served, keep: bool = True) -> None:
        """What follows an answer of the version itself; `keep`: an answer the fallback chain may keep
        (not one that came from the response cache, which is kept already)."""
        model = call.model
        if keep and model is not None and model.fallback is not None and model.fallback.caches_answers is not None:
            kept = self.fallbacks.remember(model.name, model.fallback, served.request, served.reply, served.version)
            in_background(kept)
        if model is None or model.routing is None or not call.routed_key:
            return
        if model.routing.kind in ("canary", "experiment"):
            ids = [call.request_id] + ([served.request.request_id] if served.request.request_id else [])
            in_background(
                remember_arm(
                    self.dispatcher.redis,
                    self.dispatcher.keys,
                    model.name,
                    ids,
                    model.routing.rollout_id,
                    call.arm,
                    metric=model.routing.metric,
                    # Only this key may give the request's feedback ("": anonymous, keys not required).
                    owner=call.key.public_id if call.key else "",
                )
            )
        elif (shadow := routing.should_mirror(model, call.routed_key)) is not None:
            self.shadows.add(model, shadow, served.request, served.reply, served.timeout_s)

    async def _run(self, call: Call, obs: Observation) -> Served:
        """Validate, admit (rate limit), enqueue and await the worker's reply."""
        model, entry = _routed(call)
        started = time.perf_counter()
        with tracing.stage(call.trace, "validate"):
            request = await self._parse(call, model, entry)
        timeout_s = entry.default_timeout_ms / 1000
        if request.timeout_us is not None:
            timeout_s = min(request.timeout_us / 1_000_000, settings.TURNOUT["MAX_REQUEST_TIMEOUT_SECONDS"])
        obs.validation_ms = (time.perf_counter() - started) * 1000
        call.request, call.deadline = request, time.monotonic() + timeout_s
        # A fallback that answers timeouts gets its reserve: the version has the rest.
        own_s = timeout_s - model.fallback.reserve_s(timeout_s) if model.fallback is not None else timeout_s

        admission = self.keys.admission(call.key) if call.key is not None else None
        level = call.level = call.key.priority if call.key is not None else DEFAULT_LEVEL
        cache_key = ""
        if entry.cache_ttl_seconds > 0:
            cache_key = self.cache.keys.response_cache(entry.id, digest(request))
            with tracing.stage(call.trace, "cache"):
                cached, decision = await self.cache.lookup(cache_key, admission)
            if call.key is not None and decision is not None:
                call.headers += self.keys.verdict(call.key, decision)  # 429 when it refused
            if cached is not None:
                # Never queued: the recorder leaves a hit out of queue, compute and batch figures.
                obs.cache = "hit"
                call.headers.append((CACHE_HEADER, b"hit"))
                parameters = {"arm": obs.arm, "cache": "hit"}
                return Served(request, cached, model.name, cached.outputs, parameters, timeout_s, entry.number)
            obs.cache = "miss"
            call.headers.append((CACHE_HEADER, b"miss"))
        with tracing.stage(call.trace, "enqueue"):
            try:
                ticket = await self.dispatcher.enqueue(
                    entry.id, request, own_s, entry.max_queue_size, admission, tracing.traceparent(call.trace), level
                )
            except ProtocolError as exc:
                exc.failure = "overload" if exc.status == 503 else exc.failure  # a full queue, Redis unreachable
                raise
            if call.key is not None and ticket.rate_decision is not None:
                call.headers += self.keys.verdict(call.key, ticket.rate_decision)  # 429 when it refused
        with tracing.stage(call.trace, "wait"):
            try:
                reply = await self.dispatcher.wait(ticket)
            except ProtocolError as exc:
                exc.failure = {504: "timeout", 503: "overload"}.get(exc.status, exc.failure)  # 503: lost from its queue
                raise
        obs.queue_ms, obs.compute_ms, obs.batch_size = reply.queue_ms, reply.compute_ms, reply.batch_size
        if reply.stages:
            obs.stages = reply.stages
        if reply.status != 200:
            # A worker's 503 (short of memory, or cannot load the version) passes with time.
            retry = [(b"retry-after", b"1")] if reply.status == 503 else []
            raise ProtocolError(reply.status, reply.error, retry, failure=failure_of_reply(reply))
        parameters = {"arm": obs.arm}
        if cache_key:
            parameters["cache"] = "miss"
            # Runs once this coroutine yields, which is when the answer is being sent.
            in_background(self.cache.put(cache_key, reply, entry.cache_ttl_seconds))
        return Served(request, reply, model.name, reply.outputs, parameters, timeout_s, entry.number)

    async def _parse(self, call: Call, model: ModelEntry, entry: VersionEntry) -> ParsedRequest:
        """The request's body, checked against the version's signature by the transport's parser."""
        signature = routing.require_ready(model, entry)
        if call.parse is None:
            raise ProtocolError(500, "internal error: no body parser for this request")
        return await call.parse(signature, entry.max_batch_size)


def _request_id(scope: Scope) -> str:
    given = header(scope, b"x-request-id")
    if given and len(given) <= 64 and given.isascii() and given.replace(b"-", b"").isalnum():
        return given.decode()
    return os.urandom(16).hex()  # as random as uuid4().hex, at a fraction of its cost


def _routed(call: Call) -> tuple[ModelEntry, VersionEntry]:
    if call.model is None or call.entry is None:
        raise ProtocolError(500, "internal error: the request was not routed")
    return call.model, call.entry
