"""Where an audit entry's object lives in the dashboard: a link per entry, looked up for a
whole page at once (one query per object type). Models are found by label, so this app
imports none of the others; an object since deleted, or one without a page, gets no link."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.apps import apps
from django.urls import reverse

from audit.models import AuditEntry

# Object type -> (related rows to fetch with it, its page).
PAGES: dict[str, tuple[tuple[str, ...], Callable[[Any], str]]] = {
    "registry.registeredmodel": ((), lambda obj: reverse("registry:detail", args=[obj.name])),
    "registry.modelversion": (("model",), lambda obj: reverse("registry:version", args=[obj.model.name, obj.number])),
    "registry.alias": (("model",), lambda obj: reverse("registry:detail", args=[obj.model.name])),
    "rollouts.rollout": ((), lambda obj: reverse("rollouts:detail", args=[obj.pk])),
    # The keys page lists the signed-in user's own keys: the link finds the row only for them.
    "accounts.apikey": ((), lambda obj: reverse("keys:list") + f"#key-{obj.public_id}"),
}


def object_links(entries: Iterable[AuditEntry]) -> dict[int, str]:
    """Entry id -> the URL of its object's page, for those that have one."""
    listed = list(entries)
    by_type: dict[str, set[int]] = defaultdict(set)
    for entry in listed:
        if entry.object_type in PAGES and entry.object_id.isdigit():
            by_type[entry.object_type].add(int(entry.object_id))
    urls: dict[tuple[str, str], str] = {}
    for label, ids in by_type.items():
        related, page = PAGES[label]
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        for obj in model._default_manager.filter(pk__in=ids).select_related(*related):
            urls[(label, str(obj.pk))] = page(obj)
    return {entry.pk: urls[key] for entry in listed if (key := (entry.object_type, entry.object_id)) in urls}
