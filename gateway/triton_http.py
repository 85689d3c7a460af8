"""The HTTP routes of Triton's extensions (gateway/triton.py): statistics, model configuration and
the model repository.

    GET  /v2/models/stats, /v2/models/{name}/stats, /v2/models/{name}/versions/{v}/stats
    GET  /v2/models/{name}/config, /v2/models/{name}/versions/{v}/config
    POST /v2/repository/index                       {"ready": true} lists only ready versions
    POST /v2/repository/models/{name}/load|unload   the production version, on every worker serving it
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.compression import compressed_answer, read_request_body
from gateway.http import Receive, Scope, Send, method_not_allowed, send_bytes, send_json
from gateway.protocol import ProtocolError

if TYPE_CHECKING:
    from gateway.core import GatewayCore

MAX_BODY_BYTES = 64 * 1024


async def handle(core: GatewayCore, path: str, method: str, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answers the request and returns True when `path` is one of these routes; False otherwise."""
    parts = path.split("/")[2:]  # after "", "v2"
    if method == "HEAD":
        method = "GET"
    if parts[0] == "models":
        rest = parts[1:]
        if rest == ["stats"]:
            name, version, what = None, None, "stats"
        elif len(rest) == 2 and rest[1] in ("stats", "config"):
            name, version, what = rest[0], None, rest[1]
        elif len(rest) == 4 and rest[1] == "versions" and rest[3] in ("stats", "config"):
            name, version, what = rest[0], rest[2], rest[3]
        else:
            return False
        if method != "GET":
            raise method_not_allowed(method, path, ("GET",))
        call = core.models.call(scope)
        if what == "stats":
            result: Any = await core.triton.statistics(call, name, version)
        else:
            assert name is not None
            result = await core.triton.config(call, name, version)
        body = orjson.dumps(result)
        body = compressed_answer(scope, body, call.headers)
        await send_bytes(send, 200, body, b"application/json", call.headers)
        return True
    rest = parts[1:]
    if rest == ["index"]:
        if method != "POST":
            raise method_not_allowed(method, path, ("POST",))
        options = await _options(scope, receive)
        ready = options.get("ready", False)
        if not isinstance(ready, bool):
            raise ProtocolError(400, "'ready' must be true or false")
        call = core.models.call(scope)
        await send_json(send, 200, await core.triton.index(call, ready), call.headers)
        return True
    if len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
        if method != "POST":
            raise method_not_allowed(method, path, ("POST",))
        await _options(scope, receive)
        call = core.models.call(scope)
        await core.triton.command(call, rest[1], rest[2])
        await send_json(send, 200, {}, call.headers)
        return True
    raise ProtocolError(404, f"no such endpoint: {scope['path']}")


async def _options(scope: Scope, receive: Receive) -> dict[str, Any]:
    body = await read_request_body(scope, receive, MAX_BODY_BYTES)
    if not body.strip():
        return {}
    try:
        options = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ProtocolError(400, "the request body must be a JSON object")
    return options
