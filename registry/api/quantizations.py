"""The management API's quantization of a version: start one, and follow its jobs."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from registry import quantization_services, services
from registry.api.permissions import CanMaintainParentModel
from registry.api.views import ERRORS, MODEL_NAME, ModelScopedMixin, Refused
from registry.models import ModelVersion, QuantizationJob, QuantizationMethod


class QuantizationJobSerializer(serializers.ModelSerializer):
    source_version = serializers.IntegerField(source="version.number", read_only=True)
    result_version = serializers.IntegerField(
        source="result.number",
        read_only=True,
        allow_null=True,
        help_text="The version the conversion made (or already had), once the job succeeded; it is then "
        "validated like any upload: follow its `status`.",
    )
    result_status = serializers.CharField(source="result.status", read_only=True, allow_null=True)
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True)

    class Meta:
        model = QuantizationJob
        fields = [
            "id",
            "source_version",
            "method",
            "status",
            "progress",
            "reason",
            "log",
            "result_version",
            "result_status",
            "actor",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class QuantizeRequestSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=QuantizationMethod.choices)


@extend_schema(parameters=[MODEL_NAME])
class VersionQuantizationViewSet(ModelScopedMixin, viewsets.GenericViewSet):
    """A version's quantization: maintainers start it, anyone signed in follows it."""

    serializer_class = QuantizationJobSerializer
    permission_classes = [IsAuthenticated, CanMaintainParentModel]
    lookup_field = "number"

    def get_queryset(self) -> QuerySet[ModelVersion]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no URL kwargs
            return ModelVersion.objects.none()
        return ModelVersion.objects.filter(model=self.get_registered_model()).select_related("model")

    @extend_schema(
        summary="Quantize a version",
        description=(
            "Maintainers only; the version must be ready and not a pipeline. `int8_dynamic` stores the weights "
            "as INT8 (onnxruntime's `quantize_dynamic`); `fp16` converts weights and arithmetic to half precision "
            "with FP32 inputs and outputs kept. Answers 202 with the job: the conversion runs in the background, "
            "and its result is a new version of this model whose `parent` is this version and whose `metadata` "
            "says how it was made; it is validated like any upload. Refused (400) for an unknown method, a "
            "version that is not ready, or one already quantized (or being) the same way. Audited."
        ),
        request=QuantizeRequestSerializer,
        responses={202: QuantizationJobSerializer, **ERRORS},
    )
    def quantize(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        body = QuantizeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            job = quantization_services.start_quantization(version, body.validated_data["method"], actor=request.user)
        except services.RegistryError as exc:
            raise Refused(str(exc)) from exc
        return Response(QuantizationJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="List a version's quantization jobs",
        description="Newest first, with their progress, the reason of a failure, and the resulting version.",
        responses={200: QuantizationJobSerializer(many=True), **ERRORS},
    )
    def quantizations(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        jobs = quantization_services.jobs_of(self.get_object())
        return Response(QuantizationJobSerializer(jobs, many=True).data)
