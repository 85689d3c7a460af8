"""The audit log's filters, shared by the page and `GET /api/audit/`: by model, actor, action,
object and date range. A bad value is an error message for the field, never a 500.

Entries about a model's objects are found through each model class's `AUDIT_MODEL_NAME`
(the path from the object to its registered model's name), so this app imports none of the
others; objects since deleted (a removed alias) no longer match a model filter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from django.apps import apps
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from audit.models import AuditEntry

# Parameter -> (entry field for an exact match, or None for those handled apart; help text).
PARAMETERS: dict[str, tuple[str | None, str]] = {
    "model": (None, "A registered model's name: entries about it, its versions, aliases and rollouts."),
    "actor": ("actor_name", "The username of whoever made the change, or `system`."),
    "action": ("action", "A dotted verb, e.g. `alias.moved`, `version.uploaded`."),
    "object_type": ("object_type", "e.g. `registry.alias`, `registry.modelversion`, `rollouts.rollout`."),
    "object_id": ("object_id", "The changed object's id; use with object_type."),
    "since": (None, "The first day to include, YYYY-MM-DD (server time zone)."),
    "until": (None, "The last day to include, YYYY-MM-DD (server time zone)."),
}


@dataclass
class Chosen:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    since: dt.datetime | None = None
    before: dt.datetime | None = None  # the start of the day after `until`


def parse(query: Mapping[str, str]) -> Chosen:
    chosen = Chosen({name: (query.get(name) or "").strip() for name in PARAMETERS})
    days = {}
    for name in ("since", "until"):
        raw = chosen.values[name]
        if not raw:
            continue
        try:
            days[name] = dt.date.fromisoformat(raw)
        except ValueError:
            chosen.errors[name] = f"'{raw}' is not a date: write YYYY-MM-DD, e.g. 2026-12-06."
    if "since" in days and "until" in days and days["until"] < days["since"]:
        chosen.errors["until"] = "The last day comes before the first: swap them."
    zone = timezone.get_current_timezone()
    if "since" in days:
        chosen.since = dt.datetime.combine(days["since"], dt.time.min, tzinfo=zone)
    if "until" in days:
        chosen.before = dt.datetime.combine(days["until"] + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return chosen


def about_models(queryset: QuerySet[AuditEntry], accepts: Callable[[str], bool]) -> QuerySet[AuditEntry]:
    """The entries about objects of the models whose name `accepts`."""
    scope = Q(pk__in=[])
    for model in apps.get_models():
        path = getattr(model, "AUDIT_MODEL_NAME", None)
        if path is None:
            continue
        objects = model._default_manager
        names = [name for name in objects.values_list(path, flat=True).distinct() if accepts(name)]
        ids = objects.filter(**{f"{path}__in": names}).values_list(Cast("pk", CharField()), flat=True)
        scope |= Q(object_type=model._meta.label_lower, object_id__in=ids)
    return queryset.filter(scope)


def apply(queryset: QuerySet[AuditEntry], chosen: Chosen) -> QuerySet[AuditEntry]:
    for name, (entry_field, _) in PARAMETERS.items():
        value = chosen.values[name]
        if value and entry_field is not None:
            queryset = queryset.filter(**{entry_field: value})
    if model := chosen.values["model"]:
        queryset = about_models(queryset, lambda name: name == model)
    if chosen.since is not None:
        queryset = queryset.filter(created_at__gte=chosen.since)
    if chosen.before is not None:
        queryset = queryset.filter(created_at__lt=chosen.before)
    return queryset
