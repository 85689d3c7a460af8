"""`/metrics` for Prometheus: admins' sessions, or the configured bearer token."""

from __future__ import annotations

import functools
import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from controlplane.observability.collectors import GpuCollector, ServingCollector


@functools.cache
def registry() -> CollectorRegistry:
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    collected.register(ServingCollector())
    collected.register(GpuCollector())
    return collected


def _token_ok(request: HttpRequest) -> bool:
    token = str(settings.TURNOUT["METRICS_TOKEN"])
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not (_token_ok(request) or (request.user.is_authenticated and request.user.is_staff)):
        response = HttpResponse("metrics need an admin session or the metrics bearer token\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="turnout-metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
