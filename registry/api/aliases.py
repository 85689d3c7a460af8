"""The registry's management API: a model's aliases (`production`, `staging`, ...)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from registry import services
from registry.api.permissions import CanMaintainParentModel
from registry.api.serializers import AliasSerializer, AliasWriteSerializer
from registry.api.views import ERRORS, MODEL_NAME, ModelScopedMixin, Refused, validation_error
from registry.models import Alias


@extend_schema(parameters=[MODEL_NAME])
@extend_schema_view(
    list=extend_schema(summary="List a model's aliases", responses={200: AliasSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(summary="Show an alias", responses={200: AliasSerializer, **ERRORS}),
    destroy=extend_schema(summary="Delete an alias", responses={204: None, **ERRORS}),
)
class AliasViewSet(ModelScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Aliases (`production`, `staging`, ...) of one model. Anyone signed in reads; maintainers move them."""

    serializer_class = AliasSerializer
    permission_classes = [IsAuthenticated, CanMaintainParentModel]
    lookup_field = "name"
    lookup_url_kwarg = "alias"

    def get_queryset(self) -> QuerySet[Alias]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no URL kwargs
            return Alias.objects.none()
        return Alias.objects.filter(model=self.get_registered_model()).select_related("model", "version")

    @extend_schema(
        summary="Point an alias at a version",
        description="Creates the alias or moves it, atomically. Only a ready version can take an alias.",
        request=AliasWriteSerializer,
        responses={200: AliasSerializer, 201: AliasSerializer, **ERRORS},
    )
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_registered_model()
        body = AliasWriteSerializer(data=request.data, context={"model": model})
        body.is_valid(raise_exception=True)
        name = self.kwargs["alias"]
        existed = Alias.objects.filter(model=model, name=name).exists()
        try:
            alias = services.set_alias(model, name, body.validated_data["version"], actor=request.user)
        except DjangoValidationError as exc:
            raise validation_error(exc) from exc
        except services.RegistryError as exc:
            raise Refused(str(exc)) from exc
        return Response(AliasSerializer(alias).data, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_alias(self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
