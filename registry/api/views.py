"""The registry's management API: models and their versions (aliases: registry/api/aliases.py).

Views stay thin: they check, validate and call `registry.services`; errors are
answered in DRF's shape (`{"detail": "..."}` or `{"field": ["..."]}`).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import model_scope
from registry import services
from registry.api.permissions import (
    CanCreateOrMaintainModel,
    models_in_scope,
    out_of_scope,
)
from registry.api.serializers import (
    RegisteredModelSerializer,
    RegisteredModelUpdateSerializer,
)
from registry.fallback_services import set_fallback
from registry.models import Alias, RegisteredModel


class Refused(exceptions.APIException):
    """A request the registry service refused (`services.RegistryError`)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The registry refused this request."
    default_code = "refused"


def validation_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A model's full_clean() error in DRF's shape: field -> messages."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({"detail": exc.messages})


ErrorSerializer = inline_serializer("Error", fields={"detail": serializers.CharField()})
ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid input: field → messages, or `detail`."),
    403: OpenApiResponse(ErrorSerializer, description="Not signed in, or not allowed."),
    404: OpenApiResponse(ErrorSerializer, description="No such model, version or alias."),
}
MODEL_NAME = OpenApiParameter(
    "model_name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The model's name (its slug)."
)


@extend_schema_view(
    list=extend_schema(
        summary="List models",
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, description="Search in name, description and tags."),
            OpenApiParameter("tag", OpenApiTypes.STR, description="Only models with this exact tag."),
            OpenApiParameter("kind", OpenApiTypes.STR, description="Only models (`model`) or pipelines (`pipeline`)."),
        ],
    ),
    retrieve=extend_schema(summary="Show a model", responses={200: RegisteredModelSerializer, **ERRORS}),
    create=extend_schema(
        summary="Create a model or a pipeline",
        description=(
            "Needs membership of the `maintainers` group (or admin). The caller becomes the owner. "
            '`kind: "pipeline"` makes a pipeline, whose versions are stages instead of uploads.'
        ),
        responses={201: RegisteredModelSerializer, **ERRORS},
    ),
    partial_update=extend_schema(
        summary="Change a model's description, tags or fallback",
        description="Maintainers of the model only. `fallback`: what answers when the serving version fails "
        "(timeout, model error, overload): a chain of `cache`, `version` and `human_review` steps; null removes it.",
        request=RegisteredModelUpdateSerializer,
        responses={200: RegisteredModelSerializer, **ERRORS},
    ),
)
class RegisteredModelViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Registered models: every signed-in user reads; maintainers change."""

    serializer_class = RegisteredModelSerializer
    permission_classes = [IsAuthenticated, CanCreateOrMaintainModel]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[RegisteredModel]:
        queryset = (
            models_in_scope(self.request)
            .select_related("owner")
            .prefetch_related("maintainers", Prefetch("aliases", queryset=Alias.objects.select_related("version")))
            .annotate(latest_version_number=Max("versions__number"))
            # Explicit: Django ignores Meta.ordering on a query with GROUP BY.
            .order_by("name")
        )
        if self.action == "list":
            params = self.request.query_params
            if q := params.get("q", "").strip():
                queryset = queryset.filter(Q(name__icontains=q) | Q(description__icontains=q) | Q(tags__icontains=q))
            if tag := params.get("tag", "").strip():
                queryset = queryset.filter(tags__contains=[tag])
            if kind := params.get("kind", "").strip():
                queryset = queryset.filter(kind=kind)
        return queryset

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        key = model_scope(self.request)
        name = serializer.validated_data["name"]
        if key is not None and not key.allows_model(name):  # the permission checked the raw input
            raise exceptions.PermissionDenied(out_of_scope(key, name))
        try:
            serializer.instance = services.create_model(actor=self.request.user, **serializer.validated_data)
        except IntegrityError:
            # Two requests raced past the serializer's uniqueness check.
            raise exceptions.ValidationError(
                {"name": ["A model with this name already exists; pick another name."]}
            ) from None
        except services.RegistryError as exc:
            raise exceptions.ValidationError({"name": [str(exc)]}) from None

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_object()
        changes = RegisteredModelUpdateSerializer(model, data=request.data, partial=True)
        changes.is_valid(raise_exception=True)
        data = dict(changes.validated_data)
        with transaction.atomic():
            if "fallback" in data:
                try:
                    set_fallback(model, data.pop("fallback"), actor=request.user)
                except services.RegistryError as exc:
                    raise exceptions.ValidationError({"fallback": [str(exc)]}) from None
            if data:
                services.update_model(model, actor=request.user, **data)
        return Response(self.get_serializer(model).data)


class ModelScopedMixin:
    """For views under `/models/{model_name}/`: the model, looked up once per request."""

    kwargs: dict[str, Any]
    request: Any  # a DRF Request, once the view runs
    _registered_model: RegisteredModel | None = None

    def get_registered_model(self) -> RegisteredModel:
        if self._registered_model is None:
            # A model out of the key's scope is as unknown as one that does not exist.
            scope = models_in_scope(self.request)
            self._registered_model = get_object_or_404(scope, name=self.kwargs["model_name"])
        return self._registered_model
