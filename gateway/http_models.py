"""The HTTP transport of the model endpoints, `/v2/models/{name}[/versions/{version}][/ready | /infer |
/feedback]`: the path, the body (JSON or the binary extension, compressed or not) and the answer.
The rules themselves are gateway/model_endpoints.py's, shared with gRPC."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from gateway.answers import Served
from gateway.compression import compressed_answer, read_request_body
from gateway.http import Receive, Scope, Send, header, method_not_allowed, send_bytes, send_json
from gateway.model_endpoints import ModelEndpoints
from gateway.protocol import ParsedRequest, ProtocolError, encode_response, parse_request

JSON_TYPES = (b"application/json", b"application/octet-stream")


async def handle(endpoints: ModelEndpoints, rest: str, method: str, scope: Scope, receive: Receive, send: Send) -> None:
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

    async def parse(signature: dict[str, Any], max_batch_size: int) -> ParsedRequest:
        return await _parse(scope, receive, signature, max_batch_size)

    call = endpoints.call(scope, parse if action == "infer" else None)
    result = await endpoints.run(call, name, version, action)
    if action == "feedback":
        body = await read_request_body(scope, receive, 64 * 1024)
        result = await endpoints.feedback(call, body)
    if not isinstance(result, Served):
        await send_json(send, 200, result, call.headers)
        return
    served = result
    body, json_length = encode_response(
        served.model_name, str(served.version), served.request, served.outputs, served.parameters
    )
    headers = call.headers
    if json_length is None:
        content_type = b"application/json"
    else:
        content_type = b"application/octet-stream"
        headers.append((b"inference-header-content-length", str(json_length).encode()))
    body = compressed_answer(scope, body, headers)
    await send_bytes(send, served.status, body, content_type, headers)
    endpoints.finish(call, served)


async def _parse(scope: Scope, receive: Receive, signature: dict[str, Any], max_batch_size: int) -> ParsedRequest:
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
    body = await read_request_body(scope, receive, settings.TURNOUT["MAX_REQUEST_BYTES"])
    return parse_request(body, header_length, signature, max_batch_size)
