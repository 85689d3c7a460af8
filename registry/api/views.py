"""The registry's management API: models and their versions (aliases: registry/api/aliases.py).

Views stay thin: they check, validate and call `registry.services`; errors are
answered in DRF's shape (`{"detail": "..."}` or `{"field": ["..."]}`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
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
    CanMaintainParentModel,
    models_in_scope,
    out_of_scope,
)
from registry.api.serializers import (
    RegisteredModelSerializer,
    RegisteredModelUpdateSerializer,
    VersionDetailSerializer,
    VersionSerializer,
    VersionUpdateSerializer,
    VersionUploadSerializer,
    WorkerCommandSerializer,
)
from registry.models import Alias, ModelVersion, RegisteredModel, ValidationJob, VersionStatus

# Room for the multipart boundaries and the small form fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class Refused(exceptions.APIException):
    """A request the registry service refused (`services.RegistryError`)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The registry refused this request."
    default_code = "refused"


class WorkersUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The workers cannot be reached."
    default_code = "workers_unavailable"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The upload is too large."
    default_code = "payload_too_large"


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
# The existing version plus two keys (a raw schema: a second serializer with
# the same fields would make drf-spectacular name the status enums ambiguously).
DUPLICATE_UPLOAD = {
    "allOf": [
        {"$ref": "#/components/schemas/Version"},
        {
            "type": "object",
            "properties": {
                "duplicate": {"type": "boolean", "description": "Always true: nothing new was stored."},
                "detail": {"type": "string"},
            },
            "required": ["duplicate", "detail"],
        },
    ]
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
        ],
    ),
    retrieve=extend_schema(summary="Show a model", responses={200: RegisteredModelSerializer, **ERRORS}),
    create=extend_schema(
        summary="Create a model",
        description="Needs membership of the `maintainers` group (or admin). The caller becomes the owner.",
        responses={201: RegisteredModelSerializer, **ERRORS},
    ),
    partial_update=extend_schema(
        summary="Change a model's description or tags",
        description="Maintainers of the model only.",
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
        services.update_model(model, actor=request.user, **changes.validated_data)
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


@extend_schema(parameters=[MODEL_NAME])
@extend_schema_view(
    list=extend_schema(summary="List a model's versions", responses={200: VersionSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(
        summary="Show a version, with the live workers serving it", responses={200: VersionDetailSerializer, **ERRORS}
    ),
)
class ModelVersionViewSet(ModelScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Versions of one model. Anyone signed in reads; maintainers upload and configure."""

    serializer_class = VersionSerializer
    permission_classes = [IsAuthenticated, CanMaintainParentModel]
    lookup_field = "number"

    def get_queryset(self) -> QuerySet[ModelVersion]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no URL kwargs
            return ModelVersion.objects.none()
        return (
            ModelVersion.objects.filter(model=self.get_registered_model())
            .select_related("model", "parent", "created_by")
            .prefetch_related(
                "aliases",
                Prefetch("validation_jobs", queryset=ValidationJob.objects.order_by("-created_at", "-id")),
            )
        )

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        try:
            workers: list[services.WorkerState] | None = services.worker_states(version)
        except services.WorkersUnreachable:
            workers = None  # the registry's answer does not depend on Redis
        return Response(VersionDetailSerializer(version, context={"workers": workers}).data)

    @extend_schema(
        summary="Load a version on every worker",
        description=(
            "Maintainers only; the version must be ready. Every live worker serving the version loads and warms "
            "up its session now rather than on the first request. Answers 202 at once: each worker reports its "
            "session under `workers` in `GET` of the version when it has acted."
        ),
        request=None,
        responses={202: WorkerCommandSerializer, **ERRORS, 503: OpenApiResponse(ErrorSerializer)},
    )
    def load(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._command_workers(services.load_version, "load")

    @extend_schema(
        summary="Unload a version from every worker",
        description=(
            "Maintainers only; the version must be ready. Every live worker frees its session of the version; "
            "the next request for it loads it again. Answers 202 at once."
        ),
        request=None,
        responses={202: WorkerCommandSerializer, **ERRORS, 503: OpenApiResponse(ErrorSerializer)},
    )
    def unload(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._command_workers(services.unload_version, "unload")

    @extend_schema(
        summary="Archive a version",
        description=(
            "Maintainers only. A ready or failed version is retired: workers stop serving it, the gateway answers "
            "404 for it, and it cannot take an alias or rollout traffic. Its artifact, signature and audit trail "
            "stay. Refused (400) while an alias points at it or an active rollout uses it. Audited as "
            "`version.archived`."
        ),
        request=None,
        responses={200: VersionSerializer, **ERRORS},
    )
    def archive(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._change_status(services.archive_version)

    @extend_schema(
        summary="Restore an archived version",
        description=(
            "Maintainers only. The version is ready again if it had passed validation, failed otherwise. "
            "Audited as `version.restored`."
        ),
        request=None,
        responses={200: VersionSerializer, **ERRORS},
    )
    def restore(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._change_status(services.restore_version)

    def _change_status(self, change: Callable[..., ModelVersion]) -> Response:
        try:
            changed = change(self.get_object(), actor=self.request.user)
        except services.RegistryError as exc:
            raise Refused(str(exc)) from exc
        return Response(VersionSerializer(self.get_queryset().get(pk=changed.pk)).data)

    def _command_workers(self, command: Callable[..., list[services.WorkerState]], verb: str) -> Response:
        version = self.get_object()
        try:
            workers = command(version, actor=self.request.user)
        except services.WorkersUnreachable as exc:
            raise WorkersUnavailable(str(exc)) from exc
        except services.RegistryError as exc:
            raise Refused(str(exc)) from exc
        if workers:
            detail = f"asked {len(workers)} live worker(s) to {verb} version {version.number}"
        else:
            detail = f"no live worker serves version {version.number} now: there is nothing to {verb}"
        body = WorkerCommandSerializer({"detail": detail, "workers": workers}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication: its CSRF check parses the form, which would
        # read the whole body. Refuse an oversized upload without reading it.
        if self.action == "create":
            self.refuse_oversized_upload(request)
        super().initial(request, *args, **kwargs)

    @staticmethod
    def refuse_oversized_upload(request: Request) -> None:
        limit = settings.TURNOUT["MAX_ARTIFACT_BYTES"]
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return  # Django itself treats a malformed length as no body
        if length > limit + MULTIPART_OVERHEAD_BYTES:
            raise PayloadTooLarge(
                f"The upload is {length} bytes; the largest artifact accepted is {limit} bytes "
                f"(TURNOUT_MAX_ARTIFACT_BYTES). Nothing was stored."
            )

    @extend_schema(
        summary="Upload a version",
        description=(
            "Multipart upload of an ONNX file plus optional metadata and serving settings; maintainers only. "
            "The version starts `pending` and is validated in the background. Uploading bytes this model "
            "already has answers 200 with the existing version and `duplicate: true`."
        ),
        request={"multipart/form-data": VersionUploadSerializer},
        responses={
            201: VersionSerializer,
            200: OpenApiResponse(DUPLICATE_UPLOAD, description="These bytes are already a version of this model."),
            **ERRORS,
            413: OpenApiResponse(ErrorSerializer, description="The file is over the artifact size limit."),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_registered_model()
        upload = VersionUploadSerializer(data=request.data, context={"model": model})
        upload.is_valid(raise_exception=True)
        fields = dict(upload.validated_data)
        fields.pop("file")
        parent_number = fields.pop("parent", None)
        try:
            result = services.upload_version(
                model, request.FILES["file"], actor=request.user, parent_number=parent_number, **fields
            )
        except services.ArtifactTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        except services.RegistryError as exc:
            raise Refused(str(exc)) from exc
        data = dict(VersionSerializer(result.version).data)
        if result.created:
            return Response(data, status=status.HTTP_201_CREATED)
        data["duplicate"] = True
        data["detail"] = f"these bytes are already version {result.version.number} of {model.name}"
        if result.version.status == VersionStatus.ARCHIVED:
            data["detail"] += ", which is archived: restore it to serve it again"
        return Response(data, status=status.HTTP_200_OK)

    @extend_schema(
        summary="Change a version's serving settings or metadata",
        description="Maintainers only. The artifact, its hash, number, status and signature are immutable.",
        request=VersionUpdateSerializer,
        responses={200: VersionSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        changes = VersionUpdateSerializer(version, data=request.data, partial=True)
        changes.is_valid(raise_exception=True)
        try:
            updated = services.update_version(version, actor=request.user, **changes.validated_data)
        except DjangoValidationError as exc:
            raise validation_error(exc) from exc
        except services.RegistryError as exc:
            raise Refused(str(exc)) from exc
        return Response(VersionSerializer(updated).data)
