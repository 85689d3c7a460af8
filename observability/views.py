"""`/metrics` for Prometheus: admins' sessions, or the configured bearer token."""

from __future__ import annotations

import functools
import hmac
import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from observability.collectors import GpuCollector, ServingCollector

logger = logging.getLogger(__name__)


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
    # Other processes write their sample files while this one reads them (a file
    # grows, a dead process's file is removed): a read that catches one mid-change
    # is tried again rather than answered with a 500.
    for attempt in range(3):
        try:
            return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
        except Exception:
            logger.warning("metrics: reading the samples failed (attempt %d of 3)", attempt + 1, exc_info=True)
            time.sleep(0.05)
    return HttpResponse("metrics are unavailable for a moment; retry\n", status=503)
