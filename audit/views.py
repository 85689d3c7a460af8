"""The audit page: every recorded change, newest first, filtered by model, actor, action,
object type and date range (audit/filters.py, the API's own), each entry linked to its
object's page and its change shown as a few field lines. Read-only."""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit import filters
from audit.diff import Change, changes
from audit.links import object_links
from audit.models import AuditEntry

PAGE_SIZE = 50
# Changed fields shown on the row; the rest behind "more".
SHOWN_CHANGES = 4


@dataclass
class Row:
    entry: AuditEntry
    link: str | None
    changes: list[Change]
    more: list[Change]


def _choices(field: str) -> list[str]:
    return list(AuditEntry.objects.order_by(field).values_list(field, flat=True).distinct())


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    chosen = filters.parse(request.GET)
    entries = AuditEntry.objects.order_by("-created_at", "-id")
    if not chosen.errors:
        entries = filters.apply(entries, chosen)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    listed = list(page) if not chosen.errors else []
    links = object_links(listed)
    rows = []
    for entry in listed:
        found = changes(entry.before, entry.after)
        rows.append(Row(entry, links.get(entry.pk), found[:SHOWN_CHANGES], found[SHOWN_CHANGES:]))
    # Page links keep the filters.
    query = request.GET.copy()
    query.pop("page", None)
    registered = apps.get_model("registry", "RegisteredModel")._default_manager
    model_names = list(registered.order_by("name").values_list("name", flat=True))
    context = {
        "page": page,
        "rows": rows,
        "chosen": chosen.values,
        "errors": chosen.errors,
        "filtered": any(chosen.values.values()),
        "actions": _choices("action"),
        "object_types": _choices("object_type"),
        "actors": _choices("actor_name"),
        "models": model_names,
        "query": query.urlencode(),
    }
    return render(request, "audit/list.html", context, status=400 if chosen.errors else 200)
