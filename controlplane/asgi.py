"""ASGI entry point: the lean V2 gateway beside Django.

Requests under `/v2` go to the gateway, a plain ASGI application: Django's
request handler costs about 1.2 ms of CPU per request on its own (see
docs/architecture.md), which the inference path cannot afford. Everything else
(dashboard, management API, admin) goes to Django.
"""

import os
import re
from typing import Any

import orjson
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

django_application = get_asgi_application()

from gateway.app import Gateway  # noqa: E402  (needs Django set up first)

# Model uploads: the API and the dashboard form.
UPLOAD_PATHS = re.compile(r"^/(api/models/[^/]+/versions|models/[^/]+/upload)/?$")
# Room for the multipart envelope and the form's other fields.
MULTIPART_ALLOWANCE = 64 * 1024


def _declared_length(scope: dict[str, Any]) -> int:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _refuse_oversized_upload(scope: dict[str, Any], send: Any) -> bool:
    """Django's ASGI handler reads a whole body to disk before any view runs, so an
    oversized upload is refused here, from its Content-Length, before one byte is read."""
    from django.conf import settings

    limit = settings.TURNOUT["MAX_ARTIFACT_BYTES"]
    declared = _declared_length(scope)
    if scope["method"] != "POST" or declared <= limit + MULTIPART_ALLOWANCE or not UPLOAD_PATHS.match(scope["path"]):
        return False
    message = f"The upload is {declared} bytes, over the limit of {limit} bytes for a model file."
    if scope["path"].startswith("/api/"):
        body, content_type = orjson.dumps({"detail": message}), b"application/json"
    else:
        body, content_type = f'<p class="error" role="alert">{message}</p>'.encode(), b"text/html; charset=utf-8"
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True


def build_application(gateway: Gateway) -> Any:
    async def application(scope, receive, send):  # type: ignore[no-untyped-def]
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == "/v2" or path.startswith("/v2/"):
                await gateway(scope, receive, send)
            elif not await _refuse_oversized_upload(scope, send):
                await django_application(scope, receive, send)
        elif kind == "lifespan":
            await gateway.lifespan(scope, receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    return application


application = build_application(Gateway())
