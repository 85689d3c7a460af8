"""Request bodies on the Django side are refused over their limit while they arrive.

Django's ASGI handler reads a whole body (to a temporary file past 10 MiB) before any
middleware or view runs, so a limit checked there comes too late: four anonymous
200 MiB bodies were read in full. This wraps the Django application: a body is
refused with 413 from its Content-Length before a byte of it is read, or, sent
chunked, as soon as what has arrived passes the limit; Django then sees a client
that went away and answers nothing itself.

The limit depends on the request, read from its headers alone (no session or key
look-up, which is the authentication work this must come before):

- a model upload (`POST` to the API's or the page's upload path): the largest
  artifact, `TURNOUT_MAX_ARTIFACT_BYTES`, plus room for the form around it; but a
  JSON body there (a pipeline version's stages) is no upload;
- anything else: `TURNOUT_MAX_BODY_BYTES` (the API's JSON, the pages' forms);
- a request with neither a session cookie nor an API key header ("anonymous"),
  whatever the path: at most `TURNOUT_MAX_ANONYMOUS_BODY_BYTES`, room enough for
  the log-in, sign-up and password-reset forms.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.http import parse_cookie

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Any, Any, Any], Awaitable[None]]

# Model uploads: the API and the dashboard form.
UPLOAD_PATHS = re.compile(r"^/(api/models/[^/]+/versions|models/[^/]+/upload)/?$")
# Room for the multipart envelope and the form's other fields.
MULTIPART_ALLOWANCE = 64 * 1024


@dataclass(frozen=True)
class Limit:
    bytes: int
    what: str  # completes "over the limit of N bytes ..."
    upload: bool = False


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def declared_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None  # the server refuses a malformed length before the application sees it


def is_json(scope: Scope) -> bool:
    media_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")


def is_anonymous(scope: Scope) -> bool:
    """No API key header and no session cookie: whether they are valid is not known yet."""
    if _header(scope, b"authorization") or _header(scope, b"x-api-key"):
        return False
    cookies = b"; ".join(value for key, value in scope["headers"] if key == b"cookie")
    return not parse_cookie(cookies.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)


def limits(scope: Scope) -> list[Limit]:
    """The limits this request is under, the path's first."""
    turnout = settings.TURNOUT
    if scope["method"] == "POST" and UPLOAD_PATHS.match(scope["path"]) and not is_json(scope):
        found = [
            Limit(
                turnout["MAX_ARTIFACT_BYTES"] + MULTIPART_ALLOWANCE,
                f"{turnout['MAX_ARTIFACT_BYTES']} bytes for a model file (TURNOUT_MAX_ARTIFACT_BYTES)",
                upload=True,
            )
        ]
    else:
        max_body = turnout["MAX_BODY_BYTES"]
        found = [Limit(max_body, f"{max_body} bytes for a request body (TURNOUT_MAX_BODY_BYTES)")]
    if is_anonymous(scope):
        anonymous = turnout["MAX_ANONYMOUS_BODY_BYTES"]
        found.append(
            Limit(
                anonymous,
                f"{anonymous} bytes for a request without a session or an API key "
                "(TURNOUT_MAX_ANONYMOUS_BODY_BYTES); sign in or send a key",
            )
        )
    return found


def _message(limit: Limit, size: int | None) -> str:
    subject = "The upload" if limit.upload else "The request body"
    # An upload's limit is the file's; the allowance for the form around it is not the user's concern.
    if size is None:  # chunked: how much more was coming is not known
        return f"{subject} is over the limit of {limit.what}."
    return f"{subject} is {size} bytes, over the limit of {limit.what}."


async def refuse(scope: Scope, send: Send, message: str) -> None:
    if scope["path"].startswith("/api/"):
        body, content_type = orjson.dumps({"detail": message}), b"application/json"
    else:
        body, content_type = f'<p class="error" role="alert">{message}</p>'.encode(), b"text/html; charset=utf-8"
    # Connection: close: the rest of the body is never read, so the connection cannot carry another request.
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def limit_bodies(app: App) -> App:
    """`app` (Django) behind the body limits above."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        applicable = limits(scope)
        declared = declared_length(scope)
        for limit in applicable:
            if declared is not None and declared > limit.bytes:
                await refuse(scope, send, _message(limit, declared))
                return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] != "http.request" or refused:
                return message
            received += len(message.get("body", b""))
            over = next((limit for limit in applicable if received > limit.bytes), None)
            if over is None:
                return message
            refused = True
            await refuse(scope, send, _message(over, None))
            # Django stops reading and drops the request, as for a client that went away.
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await app(scope, counting_receive, guarded_send)

    return guarded
