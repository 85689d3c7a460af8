"""The audit page: every recorded change, newest first. Read-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.models import AuditEntry

PAGE_SIZE = 50
FILTERS = ("action", "object_type", "actor")


@dataclass
class Row:
    entry: AuditEntry
    before: str | None
    after: str | None


def _pretty(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, sort_keys=True, default=str)


def _choices(field: str) -> list[str]:
    return list(AuditEntry.objects.order_by(field).values_list(field, flat=True).distinct())


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    chosen = {name: request.GET.get(name, "").strip() for name in FILTERS}
    entries = AuditEntry.objects.order_by("-created_at", "-id")
    if chosen["action"]:
        entries = entries.filter(action=chosen["action"])
    if chosen["object_type"]:
        entries = entries.filter(object_type=chosen["object_type"])
    if chosen["actor"]:
        entries = entries.filter(actor_name=chosen["actor"])
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    # Page links keep the filters.
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "rows": [Row(entry, _pretty(entry.before), _pretty(entry.after)) for entry in page],
        "chosen": chosen,
        "filtered": any(chosen.values()),
        "actions": _choices("action"),
        "object_types": _choices("object_type"),
        "actors": _choices("actor_name"),
        "query": query.urlencode(),
    }
    return render(request, "audit/list.html", context)
