"""`/api/models/{name}/versions/{n}/compare/` (start) and `.../comparisons/` (list): a variant
against its baseline before it takes traffic. Thin: variants/services.py has the rules."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from registry.api.permissions import CanMaintainParentModel
from registry.api.views import ERRORS, ModelScopedMixin
from registry.models import ModelVersion
from variants.api.serializers import (
    CapacityReportSerializer,
    CapacityRequestSerializer,
    ComparisonRequestSerializer,
    VersionComparisonSerializer,
)
from variants.capacity_services import CapacityRefused, apply_recommendation, start_capacity_report
from variants.models import CapacityReport, Comparison
from variants.services import ComparisonRefused, start_comparison


class VersionScopedMixin(ModelScopedMixin):
    """For views under `/models/{model_name}/versions/{number}/`."""

    def version(self) -> ModelVersion:
        return get_object_or_404(ModelVersion, model=self.get_registered_model(), number=self.kwargs["number"])


class ComparisonsView(VersionScopedMixin, GenericAPIView[Comparison]):
    permission_classes = [IsAuthenticated, CanMaintainParentModel]
    serializer_class = VersionComparisonSerializer

    @extend_schema(
        summary="List a version's comparisons with its baseline",
        responses={200: VersionComparisonSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        found = Comparison.objects.filter(version=self.version()).select_related("version", "baseline")
        return Response(VersionComparisonSerializer(found, many=True).data)

    @extend_schema(
        summary="Compare a version with its parent (or another baseline) before it takes traffic",
        description=(
            "Maintainers only. Both versions answer the same generated inputs in a worker's child process: "
            "agreement (argmax or label), differences per output, artifact sizes, and latency and rows/s at "
            "batch 1 and at the max batch size. 202 with the comparison; GET `comparisons/` for its result."
        ),
        request=ComparisonRequestSerializer,
        responses={202: VersionComparisonSerializer, **ERRORS},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.version()
        asked = ComparisonRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        baseline = None
        if "baseline" in asked.validated_data:
            baseline = ModelVersion.objects.filter(model=version.model, number=asked.validated_data["baseline"]).first()
            if baseline is None:
                raise exceptions.ValidationError({"baseline": [f"{version.model.name} has no such version"]})
        try:
            comparison = start_comparison(
                version, actor=request.user, baseline=baseline, rows=asked.validated_data["rows"]
            )
        except ComparisonRefused as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return Response(VersionComparisonSerializer(comparison).data, status=status.HTTP_202_ACCEPTED)


class CapacityReportsView(VersionScopedMixin, GenericAPIView[CapacityReport]):
    permission_classes = [IsAuthenticated, CanMaintainParentModel]
    serializer_class = CapacityReportSerializer

    @extend_schema(summary="List a version's capacity reports", responses={200: CapacityReportSerializer(many=True)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        found = CapacityReport.objects.filter(version=self.version()).select_related("version", "applied_by")
        return Response(CapacityReportSerializer(found, many=True).data)

    @extend_schema(
        summary="Measure a version's capacity on a worker within a p99 target",
        description=(
            "Maintainers only. A worker runs open-loop load at increasing rates against a model of its batching "
            "loop (every batch a real onnxruntime run, one thread), for a few batch sizes and queue delays, and "
            "recommends the setting that sustains the most within the target. 202; GET `capacity-reports/`."
        ),
        request=CapacityRequestSerializer,
        responses={202: CapacityReportSerializer, **ERRORS},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        asked = CapacityRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        try:
            report = start_capacity_report(
                self.version(), p99_target_ms=asked.validated_data["p99_target_ms"], actor=request.user
            )
        except CapacityRefused as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return Response(CapacityReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)


class ApplyCapacityView(ModelScopedMixin, GenericAPIView[CapacityReport]):
    permission_classes = [IsAuthenticated, CanMaintainParentModel]
    serializer_class = CapacityReportSerializer

    @extend_schema(
        summary="Apply a capacity report's recommendation to its version",
        description="Maintainers only: max_batch_size, max_queue_delay_ms and preferred_batch_sizes. Audited.",
        request=None,
        responses={200: CapacityReportSerializer, **ERRORS},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        report = get_object_or_404(
            CapacityReport.objects.select_related("version"),
            pk=self.kwargs["pk"],
            version__model=self.get_registered_model(),
            version__number=self.kwargs["number"],
        )
        try:
            apply_recommendation(report, actor=request.user)
        except CapacityRefused as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        report.refresh_from_db()
        return Response(CapacityReportSerializer(report).data)
