from __future__ import annotations

from typing import Any

from rest_framework import serializers

from variants.models import CapacityReport, Comparison
from variants.services import DEFAULT_ROWS, MAX_ROWS


class VersionComparisonSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    baseline = serializers.IntegerField(source="baseline.number", read_only=True)

    class Meta:
        model = Comparison
        fields = [
            "id",
            "version",
            "baseline",
            "status",
            "rows",
            "seed",
            "result",
            "reason",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class ComparisonRequestSerializer(serializers.Serializer[Any]):
    baseline = serializers.IntegerField(
        required=False, min_value=1, help_text="A version number of the same model; default: the version's parent."
    )
    rows = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ROWS, default=DEFAULT_ROWS, help_text="Generated input rows."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field; send baseline and/or rows."] for name in unknown})
        return attrs


class CapacityReportSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    applied_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = CapacityReport
        fields = [
            "id", "version", "p99_target_ms", "status", "result", "reason", "applied_at", "applied_by",
            "created_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class CapacityRequestSerializer(serializers.Serializer[Any]):
    p99_target_ms = serializers.FloatField(
        min_value=1, max_value=600_000, help_text="The p99 (worker side: queue and compute) to stay within."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field; send p99_target_ms."] for name in unknown})
        return attrs
