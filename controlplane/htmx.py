"""What every htmx page view shares: the request type, full page or partial, redirects."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect as django_redirect
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def wants_partial(request: HtmxHttpRequest) -> bool:
    # A boosted link or a history restore after a cache miss needs the whole page.
    return bool(request.htmx) and not request.htmx.boosted and not request.htmx.history_restore_request


def redirect(request: HtmxHttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else django_redirect(url)


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]
