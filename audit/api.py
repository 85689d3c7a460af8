"""The audit log over the management API: read-only, for every signed-in user.

Routed at `/api/audit/` by `registry/api/urls.py`.
"""

from __future__ import annotations

from django.db.models import QuerySet
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
        if self.action == "list":
            for param, (field, _) in FILTERS.items():
                if value := self.request.query_params.get(param):
                    queryset = queryset.filter(**{field: value})
        return queryset
