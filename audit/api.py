"""The audit log over the management API: read-only, for every signed-in user.

Routed at `/api/audit/` by `registry/api/urls.py`.

A request made with an API key limited to some models sees only the entries about
their objects: each model class whose objects belong to a registered model names the
path to its name (`AUDIT_MODEL_NAME`), so this app needs no import of the others.
Entries about anything else (keys, users, plans), and about aliases since deleted,
are left out for such a key.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAuthenticated

from audit.models import AuditEntry

# Query parameter -> model field; each an exact match.
FILTERS = {
    "object_type": ("object_type", "e.g. `registry.alias`, `registry.modelversion`, `registry.registeredmodel`."),
    "object_id": ("object_id", "The changed object's id; use with object_type."),
    "action": ("action", "A dotted verb, e.g. `alias.moved`, `version.uploaded`."),
    "actor": ("actor_name", "The username of whoever made the change, or `system`."),
}


def entries_in_key_scope(queryset: QuerySet[AuditEntry], key: Any) -> QuerySet[AuditEntry]:
    """The entries about objects of the models `key.allows_model` accepts."""
    scope = Q(pk__in=[])
    for model in apps.get_models():
        path = getattr(model, "AUDIT_MODEL_NAME", None)
        if path is None:
            continue
        objects = model._default_manager
        names = [name for name in objects.values_list(path, flat=True).distinct() if key.allows_model(name)]
        ids = objects.filter(**{f"{path}__in": names}).values_list(Cast("pk", CharField()), flat=True)
        scope |= Q(object_type=model._meta.label_lower, object_id__in=ids)
    return queryset.filter(scope)


def key_scope(auth: Any) -> Any:
    """The API key of a request limited to some models, else None. Duck-typed: the key is
    `accounts.models.ApiKey`, and accounts imports this app (`audit.services.record`)."""
    if hasattr(auth, "allows_model") and not getattr(auth, "covers_every_model", True):
        return auth
    return None


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor_name",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(
        summary="List audit entries, newest first",
        parameters=[
            OpenApiParameter(param, OpenApiTypes.STR, description=help_text)
            for param, (_, help_text) in FILTERS.items()
        ],
    ),
    retrieve=extend_schema(summary="Show an audit entry"),
)
class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """Who changed what, when, with the state before and after. Append-only: no writes here."""

    serializer_class = AuditEntrySerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[AuditEntry]:
        queryset = AuditEntry.objects.all()
        if (key := key_scope(self.request.auth)) is not None:
            queryset = entries_in_key_scope(queryset, key)
        if self.action == "list":
            for param, (field, _) in FILTERS.items():
                if value := self.request.query_params.get(param):
                    queryset = queryset.filter(**{field: value})
        return queryset
