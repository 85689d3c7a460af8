"""`/v2/models/{name}[/versions/{version}][/ready | /infer]`."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from controlplane.accounts.services import KeyRecord
from controlplane.gateway import routing
from controlplane.gateway.catalog import ModelEntry, RegistryUnavailable, VersionEntry
from controlplane.gateway.http import Receive, Scope, Send, send_bytes, send_json
from controlplane.gateway.protocol import ParsedRequest, ProtocolError, encode_response, parse_request
from controlplane.observability.recorder import Observation
from registry.models import NAME_VALIDATOR
from workers.wire import WireReply

if TYPE_CHECKING:
    from controlplane.gateway.app import Gateway

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("turnout.access")

PLATFORM = "onnx_onnxv1"
JSON_TYPES = (b"application/json", b"application/octet-stream")
MODEL_NAME = re.compile(NAME_VALIDATOR.regex)


async def handle(gateway: Gateway, rest: str, method: str, scope: Scope, receive: Receive, send: Send) -> None:
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
    from controlplane.gateway.app import method_not_allowed

    allowed = ("POST",) if action in ("infer", "feedback") else ("GET",)
    if method == "HEAD" and allowed == ("GET",):
        method = "GET"
    if method not in allowed:
        raise method_not_allowed(method, scope["path"].rstrip("/"), allowed)

    request_id = _request_id(scope)
    headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
    key: KeyRecord | None = None
    try:
        if gateway.require_key:
            key, rate_headers = await _authorize(gateway, scope, name, action)
            headers += rate_headers
        model = await _model(gateway, name)
        if action == "feedback":
            await feedback(gateway, model, scope, receive, send, headers)
            return
        entry = _version(model, version)
    except ProtocolError as exc:
        gateway.recorder.reject(REJECT_REASONS.get(exc.status, "invalid"))
        exc.headers = [*headers, *exc.headers]
        raise
    if action == "infer":
        arm = "pinned" if version else "champion"
        routed_key = ""
        if version is None and model.routing is not None:
            routed_key = routing.routing_key(
                scope, model.routing.routing_header, key.public_id if key else None, request_id
            )
            routed = routing.route(model, routed_key)
            if routed is not None:
                arm, entry = routed
        await infer(gateway, model, entry, arm, scope, receive, send, headers, request_id, routed_key, key)
    elif action == "ready":
        await ready(gateway, model, entry, send, headers)
    else:
        await metadata(gateway, model, entry, send, headers)


REJECT_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited", 503: "unavailable"}


def _request_id(scope: Scope) -> str:
    from controlplane.gateway.app import header

    given = header(scope, b"x-request-id")
    if given and len(given) <= 64 and given.isascii() and given.replace(b"-", b"").isalnum():
        return given.decode()
    return os.urandom(16).hex()  # as random as uuid4().hex, at a fraction of its cost


async def _authorize(
    gateway: Gateway, scope: Scope, name: str, action: str
) -> tuple[KeyRecord, list[tuple[bytes, bytes]]]:
    key = await gateway.keys.authenticate(scope)
    if not key.allows_model(name):
        # The same answer as for a model that does not exist: a key's
        # scope must not reveal which other models are deployed.
        raise ProtocolError(404, f"unknown model '{name}'")
    needed = "infer" if action in ("infer", "feedback") else "read"
    if needed not in key.actions:
        raise ProtocolError(403, f"this API key does not have the '{needed}' scope")
    if action == "infer":
        # Rate-limited in the same Redis script that enqueues the request.
        return key, []
    return key, await gateway.keys.rate_limit(key)


async def feedback(
    gateway: Gateway, model: ModelEntry, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]
) -> None:
    """`POST /v2/models/{name}/feedback {"id": ..., "reward": ...}`: an outcome joined to the arm that served it."""
    from controlplane.gateway.app import read_body

    body = await read_body(scope, receive, 64 * 1024)
    result = await routing.record_feedback(gateway.dispatcher.redis, gateway.dispatcher.prefix, model.name, body)
    await send_json(send, 200, result, headers)


async def _model(gateway: Gateway, name: str) -> ModelEntry:
    if not MODEL_NAME.match(name):
        # Not a name the registry could hold: no look-up at all.
        raise ProtocolError(404, f"unknown model {name!r}")
    try:
        model = await gateway.catalog.get(name)
    except RegistryUnavailable as exc:
        raise ProtocolError(503, f"the model registry is unavailable: {exc}", [(b"retry-after", b"2")]) from None
    if model is None:
        raise ProtocolError(404, f"unknown model '{name}'")
    return model


def _version(model: ModelEntry, version: str | None) -> VersionEntry:
    if version is None:
        if model.serving is None:
            raise ProtocolError(503, f"model '{model.name}' has no production version yet", [(b"retry-after", b"5")])
        return model.versions[model.serving]
    if not version.isdigit() or int(version) not in model.versions:
        raise ProtocolError(404, f"model '{model.name}' has no version '{version}'")
    return model.versions[int(version)]


def _require_ready(model: ModelEntry, entry: VersionEntry) -> dict[str, Any]:
    if not entry.ready or entry.signature is None:
        detail = f": {entry.status_reason}" if entry.status_reason else ""
        raise ProtocolError(
            503, f"model '{model.name}' version {entry.number} is {entry.status}{detail}", [(b"retry-after", b"5")]
        )
    return entry.signature


async def metadata(
    gateway: Gateway, model: ModelEntry, entry: VersionEntry, send: Send, headers: list[tuple[bytes, bytes]]
) -> None:
    signature = _require_ready(model, entry)
    providers = await _providers(gateway, entry)
    body = {
        "name": model.name,
        "versions": [str(n) for n, v in sorted(model.versions.items()) if v.ready],
        "platform": PLATFORM,
        "inputs": signature["inputs"],
        "outputs": signature["outputs"],
        "parameters": {
            "version": str(entry.number),
            "max_batch_size": entry.max_batch_size if signature["batch_dim"] else 0,
            "execution_providers": providers,
        },
    }
    await send_json(send, 200, body, headers)


async def ready(
    gateway: Gateway, model: ModelEntry, entry: VersionEntry, send: Send, headers: list[tuple[bytes, bytes]]
) -> None:
    _require_ready(model, entry)
    providers = await _providers(gateway, entry)
    if not providers:
        raise ProtocolError(
            503, f"no live worker serves model '{model.name}' version {entry.number}", [(b"retry-after", b"5")]
        )
    body = {"name": model.name, "version": str(entry.number), "ready": True, "execution_providers": providers}
    await send_json(send, 200, body, headers)


async def _providers(gateway: Gateway, entry: VersionEntry) -> dict[str, str]:
    """worker name -> execution provider, for the live workers serving this version."""
    from workers.serving_state import read_served_by

    return await read_served_by(gateway.dispatcher.redis, settings.TURNOUT["REDIS_PREFIX"], entry.id)


async def infer(
    gateway: Gateway,
    model: ModelEntry,
    entry: VersionEntry,
    arm: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    request_id: str,
    routed_key: str = "",
    key: KeyRecord | None = None,
) -> None:
    started = time.perf_counter()
    obs = Observation(model.name, str(entry.number), arm, 200, 0.0)
    try:
        request, reply, body_out, json_length, timeout_s = await _infer(
            gateway, model, entry, scope, receive, obs, key, headers
        )
    except ProtocolError as exc:
        obs.code = exc.status
        obs.total_ms = (time.perf_counter() - started) * 1000
        if not obs.validation_ms and exc.status in (400, 413, 415):
            obs.validation_ms = obs.total_ms  # refused while validating
        gateway.recorder.record(obs)
        access_log(scope, request_id, obs)
        exc.headers = [*headers, (b"x-turnout-arm", arm.encode()), *exc.headers]
        raise
    obs.total_ms = (time.perf_counter() - started) * 1000
    gateway.recorder.record(obs)
    access_log(scope, request_id, obs)
    headers = [
        *headers,
        (b"x-turnout-model-version", str(entry.number).encode()),
        (b"x-turnout-arm", arm.encode()),
        (b"x-turnout-batch-size", str(reply.batch_size).encode()),
        (b"server-timing", _timing(obs).encode()),
    ]
    if json_length is None:
        await send_bytes(send, 200, body_out, b"application/json", headers)
    else:
        headers.append((b"inference-header-content-length", str(json_length).encode()))
        await send_bytes(send, 200, body_out, b"application/octet-stream", headers)
    # After the client has its answer: nothing below adds to its latency.
    if model.routing is not None and routed_key:
        if model.routing.kind in ("canary", "experiment"):
            ids = [request_id] + ([request.request_id] if request.request_id else [])
            redis_client, prefix = gateway.dispatcher.redis, gateway.dispatcher.prefix
            routing.in_background(
                routing.remember_arm(redis_client, prefix, model.name, ids, model.routing.rollout_id, arm)
            )
        elif (shadow := routing.should_mirror(model, routed_key)) is not None:
            gateway.shadows.add(model, shadow, request, reply, timeout_s)


async def _infer(
    gateway: Gateway,
    model: ModelEntry,
    entry: VersionEntry,
    scope: Scope,
    receive: Receive,
    obs: Observation,
    key: KeyRecord | None,
    headers: list[tuple[bytes, bytes]],
) -> tuple[ParsedRequest, WireReply, bytes, int | None, float]:
    from controlplane.gateway.app import header, read_body

    started = time.perf_counter()
    signature = _require_ready(model, entry)
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
    body = await read_body(scope, receive, settings.TURNOUT["MAX_REQUEST_BYTES"])
    request = parse_request(body, header_length, signature, entry.max_batch_size)
    timeout_s = entry.default_timeout_ms / 1000
    if request.timeout_us is not None:
        timeout_s = min(request.timeout_us / 1_000_000, settings.TURNOUT["MAX_REQUEST_TIMEOUT_SECONDS"])
    obs.validation_ms = (time.perf_counter() - started) * 1000

    admission = gateway.keys.admission(key) if key is not None else None

    def admitted(decision: list[Any]) -> None:
        assert key is not None
        headers.extend(gateway.keys.verdict(key, decision))  # raises 429 when refused

    reply = await gateway.dispatcher.submit(
        entry.id, request, timeout_s, entry.max_queue_size, admission, admitted if key is not None else None
    )
    obs.queue_ms, obs.compute_ms, obs.batch_size = reply.queue_ms, reply.compute_ms, reply.batch_size
    if reply.status != 200:
        raise ProtocolError(reply.status, reply.error)
    parameters = {"arm": obs.arm}
    body_out, json_length = encode_response(model.name, str(entry.number), request, reply.outputs, parameters)
    return request, reply, body_out, json_length, timeout_s


def _timing(obs: Observation) -> str:
    return (
        f"validate;dur={obs.validation_ms:.3f}, queue;dur={obs.queue_ms:.3f}, "
        f"compute;dur={obs.compute_ms:.3f}, total;dur={obs.total_ms:.3f}"
    )


def access_log(scope: Scope, request_id: str, obs: Observation) -> None:
    """One JSON line per inference; never the tensors. Serialised here with orjson
    (the handler only writes it): python-json-logger would cost several times more
    on every request."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f"{time.time() % 1:.3f}"[1:] + "Z",
        "level": "INFO",
        "logger": "turnout.access",
        "message": f"{scope['method']} {scope['path']} {obs.code}",
        "request_id": request_id,
        "client": client[0] if client else None,
        "model": obs.model,
        "version": obs.version,
        "arm": obs.arm,
        "status": obs.code,
        "batch_size": obs.batch_size,
        "validation_ms": round(obs.validation_ms, 3),
        "queue_ms": round(obs.queue_ms, 3),
        "compute_ms": round(obs.compute_ms, 3),
        "total_ms": round(obs.total_ms, 3),
    }
    access_logger.info(orjson.dumps(line).decode())
