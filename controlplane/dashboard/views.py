"""Dashboard pages. One view returns the full page or, for htmx, its partial."""

from __future__ import annotations

from typing import Any

import redis
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from controlplane.redis_client import get_redis
from workers.heartbeat import alive_workers


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _service_parts() -> dict[str, Any]:
    parts = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            parts.append({"name": "PostgreSQL", "ok": True, "detail": cursor.fetchone()[0].split(" on ")[0]})
    except DatabaseError as exc:
        parts.append({"name": "PostgreSQL", "ok": False, "detail": str(exc).splitlines()[0]})
    workers: list[str] = []
    try:
        client = get_redis()
        client.ping()
        parts.append({"name": "Redis", "ok": True, "detail": "answers PING"})
        workers = alive_workers(client)
        parts.append({"name": "Workers", "ok": bool(workers), "detail": ", ".join(workers) or "none alive"})
    except redis.RedisError as exc:
        parts.append({"name": "Redis", "ok": False, "detail": str(exc)})
        parts.append({"name": "Workers", "ok": False, "detail": "unknown while Redis is down"})
    return {"parts": parts, "workers": workers}


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/home.html", _service_parts())


@login_required
@require_GET
def health(request: HtmxHttpRequest) -> HttpResponse:
    template = "dashboard/_health.html" if request.htmx else "dashboard/home.html"
    return render(request, template, _service_parts())
