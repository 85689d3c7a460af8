"""The rate-limit headers of the management API.

`api.ApiKeyRateThrottle` notes a key's limits on the request; this middleware
puts them on the response, whatever it is (the view's answer or a 429), as
the gateway does on `/v2`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

ATTRIBUTE = "turnout_ratelimit"


def _add(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    for name, value in getattr(request, ATTRIBUTE, {}).items():
        response.setdefault(name, value)
    return response


@sync_and_async_middleware
def ratelimit_headers(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponseBase:
            return _add(request, await get_response(request))

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return _add(request, get_response(request))

    return middleware


def note(request: HttpRequest, headers: dict[str, str]) -> None:
    setattr(request, ATTRIBUTE, headers)
