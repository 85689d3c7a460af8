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

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated

from audit import filters
from audit.models import AuditEntry


def entries_in_key_scope(queryset: QuerySet[AuditEntry], key: Any) -> QuerySet[AuditEntry]:
    """The entries about objects of the models `key.allows_model` accepts."""
    return filters.about_models(queryset, key.allows_model)


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
            for param, (_, help_text) in filters.PARAMETERS.items()
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
            chosen = filters.parse(self.request.query_params)
            if chosen.errors:
                raise ValidationError(chosen.errors)
            queryset = filters.apply(queryset, chosen)
        return queryset
