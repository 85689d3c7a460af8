"""The registry's management API: a model's versions, uploaded or (for a pipeline) made of stages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import model_scope
from registry import pipeline_services, services
from registry.api import pipelines
from registry.api.permissions import CanMaintainParentModel, models_in_scope
from registry.api.serializers import VersionDetailSerializer, VersionSerializer, WorkerCommandSerializer
from registry.api.version_inputs import VersionUpdateSerializer, VersionUploadSerializer
from registry.api.views import ERRORS, MODEL_NAME, ErrorSerializer, ModelScopedMixin, Refused, validation_error
from registry.models import ModelVersion, PipelineStage, RegisteredModel, ValidationJob, VersionStatus

# Room for the multipart boundaries and the small form fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class WorkersUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The workers cannot be reached."
    default_code = "workers_unavailable"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The upload is too large."
    default_code = "payload_too_large"


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
                Prefetch("stages", queryset=PipelineStage.objects.select_related("version__model")),
                Prefetch("pipeline_stages", queryset=PipelineStage.objects.select_related("pipeline_version__model")),
            )
        )

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "model_scope": model_scope(self.request)}

    def _present(self, version: ModelVersion, serializer: type[VersionSerializer] = VersionSerializer) -> Any:
        """The version as the API shows it, re-read with what the serializer reads prefetched."""
        return serializer(self.get_queryset().get(pk=version.pk), context=self.get_serializer_context()).data

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        try:
            workers: list[services.WorkerState] | None = services.worker_states(version)
        except services.WorkersUnreachable:
            workers = None  # the registry's answer does not depend on Redis
        context = {**self.get_serializer_context(), "workers": workers}
        return Response(VersionDetailSerializer(version, context=context).data)

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
        return Response(self._present(changed))

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
        summary="Upload a version, or create a pipeline version",
        description=(
            "Maintainers only. The version starts `pending` and is validated in the background.\n\n"
            "**A model**: a multipart upload of an ONNX file plus optional metadata and serving settings. "
            "Uploading bytes this model already has answers 200 with the existing version and `duplicate: true`.\n\n"
            "**A pipeline**: a JSON body naming its `stages`, each a ready version of another model (by number "
            "or alias), their wiring (`inputs`) and the pipeline's `outputs`. Stages that do not fit together are "
            "refused with 400 naming the stage and tensor; the same definition again answers 200 with the existing "
            "version and `duplicate: true`. Validation then runs the whole chain once."
        ),
        request={
            "multipart/form-data": VersionUploadSerializer,
            "application/json": pipelines.PipelineVersionCreateSerializer,
        },
        responses={
            201: VersionSerializer,
            200: OpenApiResponse(DUPLICATE_UPLOAD, description="These bytes (this definition) are already a version."),
            **ERRORS,
            413: OpenApiResponse(ErrorSerializer, description="The file is over the artifact size limit."),
        },
        examples=pipelines.EXAMPLES,
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_registered_model()
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        is_form = media_type.startswith("multipart/") or media_type == "application/x-www-form-urlencoded"
        if model.is_pipeline and is_form:
            raise Refused(
                f"'{model.name}' is a pipeline: its versions are made of stages, not uploaded. "
                "Send a JSON body with `stages` instead, each with a `name`, a `model` and a `version`."
            )
        if model.is_pipeline:
            return self._create_pipeline_version(request, model)
        if not is_form:
            raise Refused(
                f"'{model.name}' is a model: upload its versions as multipart/form-data with the ONNX file as "
                "`file`. Only a pipeline's versions are made of `stages`."
            )
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
        data = dict(self._present(result.version))
        if result.created:
            return Response(data, status=status.HTTP_201_CREATED)
        data["duplicate"] = True
        data["detail"] = f"these bytes are already version {result.version.number} of {model.name}"
        if result.version.status == VersionStatus.ARCHIVED:
            data["detail"] += ", which is archived: restore it to serve it again"
        return Response(data, status=status.HTTP_200_OK)

    def _create_pipeline_version(self, request: Request, model: RegisteredModel) -> Response:
        # Stage models are looked up among those the caller may see: a key limited to some
        # models cannot build on (or learn of) the others.
        context = {"models": models_in_scope(request)}
        body = pipelines.PipelineVersionCreateSerializer(data=request.data, context=context)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        stages, outputs = fields.pop("stages"), fields.pop("outputs", None)
        try:
            result = pipeline_services.create_pipeline_version(
                model, stages, actor=request.user, outputs=outputs, **fields
            )
        except pipeline_services.PipelineRefused as exc:
            raise pipelines.refusal_error(exc) from exc
        except services.RegistryError as exc:
            raise Refused(str(exc)) from exc
        return pipelines.created_or_existing(dict(self._present(result.version)), result.created, model)

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
        return Response(self._present(updated))
