"""Drive an ASGI application in-process, the way a server would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class AsgiResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return orjson.loads(self.body)


def http_scope(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The scope a server would build for this request."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 12345),
        "server": ("testserver", 80),
    }


class AsgiClient:
    """Runs every request on one event loop, so connections the app keeps stay usable."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> AsgiResponse:
        return self.loop.run_until_complete(self.arequest(method, path, body, headers))

    def get(self, path: str, **kwargs: Any) -> AsgiResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: bytes = b"", **kwargs: Any) -> AsgiResponse:
        return self.request("POST", path, body, **kwargs)

    async def arequest(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> AsgiResponse:
        scope = http_scope(method, path, body, headers or {})
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        response = AsgiResponse(status=0, headers={})
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        response.body = b"".join(chunks)
        return response
