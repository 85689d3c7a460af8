"""Dashboard pages. One view returns the full page or, for htmx, its partial."""

from __future__ import annotations

import math
from typing import Any

import orjson
import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from controlplane.htmx import HtmxHttpRequest
from controlplane.redis_client import get_redis, redis_keys
from dataplane.liveness import alive_workers, beat_state
from observability import queries, reports
from registry.models import ModelVersion, RegisteredModel, VersionStatus
from registry.services import PRODUCTION

# Example requests on empty pages spell out a tensor's data up to this many elements.
EXAMPLE_ELEMENTS = 16


def _wants_partial(request: HtmxHttpRequest) -> bool:
    # A boosted link or a history restore after a cache miss needs the whole page.
    return bool(request.htmx) and not request.htmx.boosted and not request.htmx.history_restore_request


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
        workers = alive_workers(client, redis_keys(), float(settings.TURNOUT["WORKER_TTL_SECONDS"]))
        parts.append({"name": "Workers", "ok": bool(workers), "detail": ", ".join(workers) or "none alive"})
        beat = beat_state(client.get(redis_keys().beat()), float(settings.TURNOUT["BEAT_TTL_SECONDS"]))
        detail = beat.get("error") or f"heartbeat {beat['seconds_ago']} s ago (pid {beat['pid']} on {beat['host']})"
        parts.append({"name": "Beat", "ok": beat["ok"], "detail": detail})
    except redis.RedisError as exc:
        parts.append({"name": "Redis", "ok": False, "detail": str(exc)})
        parts.append({"name": "Workers", "ok": False, "detail": "unknown while Redis is down"})
        parts.append({"name": "Beat", "ok": False, "detail": "unknown while Redis is down"})
    return {"parts": parts, "workers": workers}


def _window_name(request: HttpRequest) -> str:
    name = request.GET.get("window", "")
    return name if name in queries.WINDOWS else queries.DEFAULT_WINDOW


def _windows(request: HttpRequest, current: str) -> list[dict[str, Any]]:
    """The window selector's links; 30d is accepted in the URL but not offered."""
    names = list(queries.DASHBOARD_WINDOWS)
    if current not in names:
        names.append(current)
    return [{"name": n, "url": f"{request.path}?window={n}", "current": n == current} for n in names]


def _unavailable(exc: Exception) -> str:
    return f"Figures are unavailable while Redis or PostgreSQL is unreachable ({exc}). See Services below."


@login_required
@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    name = _window_name(request)
    context: dict[str, Any] = {"window_name": name, "windows": _windows(request, name)}
    try:
        context["window"], context["rows"] = reports.overview(name)
    except (redis.RedisError, DatabaseError) as exc:
        context["unavailable"] = _unavailable(exc)
    context["any_traffic"] = any(row.figures.requests for row in context.get("rows", []))
    if context.get("rows") and not context["any_traffic"]:
        servable = RegisteredModel.objects.filter(versions__status=VersionStatus.READY).order_by("name").first()
        context["example"] = _example_curl(request, servable)
    if _wants_partial(request):
        return render(request, "dashboard/_overview.html", context)
    return render(request, "dashboard/home.html", {**context, **_service_parts()})


@login_required
@require_GET
def health(request: HtmxHttpRequest) -> HttpResponse:
    """The overview's services table, for its polling; opened as a page, the overview itself
    (rendering the overview here would lack its figures and repeat the table)."""
    if not _wants_partial(request):
        return redirect(reverse("dashboard:home") + "#health")
    return render(request, "dashboard/_health.html", _service_parts())


@login_required
@require_GET
def model_stats(request: HtmxHttpRequest, name: str) -> HttpResponse:
    model = RegisteredModel.objects.filter(name=name).first()
    window_name = _window_name(request)
    context: dict[str, Any] = {
        "name": name,
        "model": model,
        "window_name": window_name,
        "windows": _windows(request, window_name),
        "example": _example_curl(request, model),
    }
    try:
        report = reports.model_report(name, window_name)
    except (redis.RedisError, DatabaseError) as exc:
        if model is None:
            raise Http404(f"no model named {name!r}") from None
        context["unavailable"] = _unavailable(exc)
    else:
        if model is None and not report.figures.requests:
            raise Http404(f"no model named {name!r}")
        context.update(report=report, window=report.window)
        if model is not None:
            context["ready"] = model.versions.filter(status=VersionStatus.READY).exists()
    template = "dashboard/_model_stats.html" if _wants_partial(request) else "dashboard/model.html"
    return render(request, template, context)


@login_required
@require_GET
def workers(request: HtmxHttpRequest) -> HttpResponse:
    context: dict[str, Any] = {}
    try:
        found = reports.workers()
    except redis.RedisError as exc:
        context["unavailable"] = f"Workers are unknown while Redis is unreachable ({exc})."
        found = []
    context["alive"] = [w for w in found if w.alive]
    context["gone"] = [w for w in found if not w.alive]
    template = "dashboard/_workers.html" if _wants_partial(request) else "dashboard/workers.html"
    return render(request, template, context)


def _example_curl(request: HttpRequest, model: RegisteredModel | None) -> str:
    """A request that works against `model`'s production version, for empty states."""
    name = model.name if model is not None else "<model>"
    body: Any = {"inputs": [{"name": "<input>", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}
    version = _production(model)
    if version is not None and version.signature:
        body = {"inputs": [_example_input(spec) for spec in version.signature["inputs"]]}
    url = request.build_absolute_uri(f"/v2/models/{name}/infer")
    return (
        "curl -s -H 'Authorization: Bearer <API key>' -H 'Content-Type: application/json' "
        f"-d '{orjson.dumps(body).decode()}' {url}"
    )


def _production(model: RegisteredModel | None) -> ModelVersion | None:
    if model is None:
        return None
    alias = model.aliases.filter(name=PRODUCTION).select_related("version").first()
    if alias is not None:
        return alias.version
    return model.versions.filter(status=VersionStatus.READY).order_by("-number").first()


def _example_input(spec: dict[str, Any]) -> dict[str, Any]:
    shape = [1 if d < 0 else d for d in spec["shape"]]
    elements = math.prod(shape)
    zero: Any = {"BOOL": False, "BYTES": ""}.get(spec["datatype"], 0)
    data: Any = [zero] * elements if elements <= EXAMPLE_ELEMENTS else f"<{elements} values>"
    return {"name": spec["name"], "shape": shape, "datatype": spec["datatype"], "data": data}
