"""The `/v2/models/{name}[/versions/{version}][/ready | /infer | /feedback]` endpoints:
model metadata, readiness, inference and feedback.

Each request becomes one `Call`, which carries what the steps after routing need
(the scope, the response headers so far, the key, the model and version, the arm).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

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
from gateway.http import Receive, Scope, Send, header, method_not_allowed, read_body, send_bytes, send_json
from gateway.protocol import ParsedRequest, ProtocolError, encode_response, parse_request
from gateway.response_cache import ResponseCache, digest
from gateway.shadows import ShadowCopies
from observability import tracing
from observability.recorder import Observation, Recorder
from registry.models import NAME_VALIDATOR

logger = logging.getLogger(__name__)

PLATFORM = "onnx_onnxv1"
PIPELINE_PLATFORM = "turnout_pipeline"  # stages run back to back in one worker, as Triton's "ensemble"
JSON_TYPES = (b"application/json", b"application/octet-stream")
MODEL_NAME = re.compile(NAME_VALIDATOR.regex)
REJECT_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited", 503: "unavailable"}
Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Call:
    """One request to a model endpoint, filled in as it is routed."""

    scope: Scope
    receive: Receive
    send: Send
    request_id: str
    headers: Headers  # response headers so far
    key: KeyRecord | None = None
    model: ModelEntry | None = None
    entry: VersionEntry | None = None
    arm: str = "champion"
    routed_key: str = ""  # what chose the arm; empty when no rollout routed it
    trace: tracing.RequestTrace | None = None  # an inference's server span, while tracing is on
    request: ParsedRequest | None = None  # once validated
    deadline: float = 0.0  # time.monotonic() at which the client's timeout ends, once validated
    level: str = DEFAULT_LEVEL  # the key's priority level (dataplane/priority.py)


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

    async def handle(self, rest: str, method: str, scope: Scope, receive: Receive, send: Send) -> None:
        parts = rest.split("/")
        name = parts[0]
        version: str | None = None
        if len(parts) >= 3 and parts[1] == "versions":
            version = parts[2]
            tail = parts[3:]
        else:
            tail = parts[1:]
        if len(tail) > 1 or (tail and tail[0] not in ("ready", "infer", "feedback")) or not name:
            raise ProtocolError(404, f"no such endpoint: {scope['path']}")
        action = tail[0] if tail else ""
        if action == "feedback" and version is not None:
            raise ProtocolError(404, f"no such endpoint: {scope['path']}; feedback goes to /v2/models/{name}/feedback")
        allowed = ("POST",) if action in ("infer", "feedback") else ("GET",)
        if method == "HEAD" and allowed == ("GET",):
            method = "GET"
        if method not in allowed:
            raise method_not_allowed(method, scope["path"].rstrip("/"), allowed)

        request_id = _request_id(scope)
        call = Call(scope, receive, send, request_id, [(b"x-request-id", request_id.encode())])
        if action == "infer" and tracing.enabled():
            await self._traced(call, name, version)
        else:
            await self._serve(call, name, version, action)

    async def _traced(self, call: Call, name: str, version: str | None) -> None:
        """An inference under its server span, which ends with the answer's status, error or not."""
        trace = call.trace = tracing.start_request(name, version is not None, call.request_id, call.scope["headers"])
        if trace is None:  # turned off meanwhile
            await self._serve(call, name, version, "infer")
            return
        # Also when not sampled: the id exists, and the client may send it on as its traceparent.
        call.headers.append((tracing.TRACE_ID_HEADER, trace.trace_id.encode()))
        status, error = 500, "internal error"
        try:
            await self._serve(call, name, version, "infer")
            status, error = 200, ""
        except ProtocolError as exc:
            status, error = exc.status, exc.message
            raise
        finally:
            trace.finish(status, error, call.entry.number if call.entry else None, call.arm)

    async def _serve(self, call: Call, name: str, version: str | None, action: str) -> None:
        scope = call.scope
        try:
            if self.require_key:
                with tracing.stage(call.trace, "authenticate"):
                    call.key = await self._authorize(call, name, action)
            call.model = await self._model(name)
            if action == "feedback":
                await self.feedback(call)
                return
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
            await self.infer(call)
        elif action == "ready":
            await self.ready(call)
        else:
            await self.metadata(call)

    async def _authorize(self, call: Call, name: str, action: str) -> KeyRecord:
        key = await self.keys.authenticate(call.scope)
        if not key.allows_model(name):
            # The same answer as for a model that does not exist: a key's
            # scope must not reveal which other models are deployed.
            raise ProtocolError(404, f"unknown model '{name}'")
        needed = "infer" if action in ("infer", "feedback") else "read"
        if needed not in key.actions:
            raise ProtocolError(403, f"this API key does not have the '{needed}' scope")
        if action != "infer":
            # An inference is rate-limited in the same Redis script that enqueues it (_run).
            call.headers += await self.keys.rate_limit(key)
        return key

    async def _model(self, name: str) -> ModelEntry:
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

    async def feedback(self, call: Call) -> None:
        """`POST /v2/models/{name}/feedback {"id": ..., "reward": ...}`: an outcome joined to the arm that served it."""
        assert call.model is not None
        body = await read_body(call.scope, call.receive, 64 * 1024)
        result = await self.feedbacks.record(call.model.name, body, call.key.public_id if call.key else "")
        await send_json(call.send, 200, result, call.headers)

    async def metadata(self, call: Call) -> None:
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
        await send_json(call.send, 200, body, call.headers)

    async def ready(self, call: Call) -> None:
        model, entry = _routed(call)
        routing.require_ready(model, entry)
        providers = await self._providers(entry)
        if not providers:
            raise ProtocolError(
                503, f"no live worker serves model '{model.name}' version {entry.number}", [(b"retry-after", b"5")]
            )
        body = {"name": model.name, "version": str(entry.number), "ready": True, "execution_providers": providers}
        await send_json(call.send, 200, body, call.headers)

    async def _providers(self, entry: VersionEntry) -> dict[str, str]:
        """worker name -> execution provider, for the live workers serving this version."""
        return await read_served_by(self.dispatcher.redis, redis_keys(), entry.id, self.worker_ttl_seconds)

    async def infer(self, call: Call) -> None:
        model, entry = _routed(call)
        started = time.perf_counter()
        obs = Observation(model.name, str(entry.number), call.arm, 200, 0.0)
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
        headers = [
            *call.headers,
            (b"x-turnout-model-version", str(served.version).encode()),
            (b"x-turnout-arm", call.arm.encode()),
            (b"x-turnout-batch-size", str(served.reply.batch_size).encode()),
            (b"server-timing", server_timing(obs).encode()),
        ]
        if obs.fallback:
            headers.append((b"x-turnout-fallback", obs.fallback.encode()))
            headers.append((b"x-turnout-fallback-reason", obs.fallback_reason.encode()))
        if served.json_length is None:
            await send_bytes(call.send, served.status, served.body, b"application/json", headers)
        else:
            headers.append((b"inference-header-content-length", str(served.json_length).encode()))
            await send_bytes(call.send, served.status, served.body, b"application/octet-stream", headers)
        # After the client has its answer: nothing below adds to its latency.
        if not obs.fallback:
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
        body, json_length = encode_response(model.name, str(version), request, outputs, parameters)
        return Served(request, reply, body, json_length, 0.0, version, answer.status)

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
                body_out, json_length = encode_response(
                    model.name, str(entry.number), request, cached.outputs, parameters
                )
                return Served(request, cached, body_out, json_length, timeout_s, entry.number)
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
        body_out, json_length = encode_response(model.name, str(entry.number), request, reply.outputs, parameters)
        return Served(request, reply, body_out, json_length, timeout_s, entry.number)

    async def _parse(self, call: Call, model: ModelEntry, entry: VersionEntry) -> ParsedRequest:
        """The request body, read and checked against the version's signature."""
        signature = routing.require_ready(model, entry)
        scope = call.scope
        content_type = (header(scope, b"content-type") or b"application/json").split(b";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            raise ProtocolError(
                415, f"unsupported Content-Type {content_type.decode(errors='replace')!r}; send application/json"
            )
        raw_length = header(scope, b"inference-header-content-length")
        header_length: int | None = None
        if raw_length is not None:
            try:
                header_length = int(raw_length)
            except ValueError:
                raise ProtocolError(400, "Inference-Header-Content-Length is not a number") from None
            if header_length < 0:
                raise ProtocolError(400, "Inference-Header-Content-Length must not be negative")
        body = await read_body(scope, call.receive, settings.TURNOUT["MAX_REQUEST_BYTES"])
        return parse_request(body, header_length, signature, entry.max_batch_size)


def _request_id(scope: Scope) -> str:
    given = header(scope, b"x-request-id")
    if given and len(given) <= 64 and given.isascii() and given.replace(b"-", b"").isalnum():
        return given.decode()
    return os.urandom(16).hex()  # as random as uuid4().hex, at a fraction of its cost


def _routed(call: Call) -> tuple[ModelEntry, VersionEntry]:
    if call.model is None or call.entry is None:
        raise ProtocolError(500, "internal error: the request was not routed")
    return call.model, call.entry
