"""Serializers for the registry API.

They validate and present; every change goes through `registry.services`.
Write serializers refuse fields they do not know, so a typo (`max_batch=8`)
is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.models import Max
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from registry.api.fields import (
    reject_unexpected_fields,
    tags_field,
)
from registry.models import (
    NAME_VALIDATOR,
    Alias,
    ModelKind,
    ModelVersion,
    PipelineStage,
    RegisteredModel,
    ValidationJob,
    VersionStatus,
)
from registry.services import SERVING_FIELDS

# --- Models -------------------------------------------------------------------------------------------------------


class RegisteredModelSerializer(serializers.ModelSerializer):
    name = serializers.CharField(
        max_length=64,
        validators=[
            NAME_VALIDATOR,
            UniqueValidator(
                queryset=RegisteredModel.objects.all(),
                message="A model with this name already exists; pick another name.",
            ),
        ],
        help_text="Slug used in URLs and by clients; cannot change later.",
    )
    kind = serializers.ChoiceField(
        choices=ModelKind.choices,
        default=ModelKind.MODEL,
        help_text="`model`: versions are uploaded ONNX files. `pipeline`: versions are stages, ready versions "
        "of other models run back to back. Cannot change later.",
    )
    tags = tags_field(required=False)
    owner: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    maintainers: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", many=True, read_only=True
    )
    aliases = serializers.SerializerMethodField(help_text="Alias name → version number.")
    latest_version = serializers.SerializerMethodField(help_text="Highest version number, whatever its status.")
    fallback = serializers.JSONField(
        read_only=True,
        help_text="What answers when the serving version fails (docs/api.md#fallbacks); null: failures reach clients.",
    )

    class Meta:
        model = RegisteredModel
        fields = [
            "name",
            "kind",
            "description",
            "tags",
            "owner",
            "maintainers",
            "aliases",
            "latest_version",
            "fallback",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_aliases(self, obj: RegisteredModel) -> dict[str, int]:
        return {alias.name: alias.version.number for alias in obj.aliases.all()}

    def get_latest_version(self, obj: RegisteredModel) -> int | None:
        if hasattr(obj, "latest_version_number"):
            return obj.latest_version_number
        return obj.versions.aggregate(latest=Max("number"))["latest"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unexpected_fields(self)
        return attrs


class RegisteredModelUpdateSerializer(RegisteredModelSerializer):
    name = serializers.CharField(read_only=True)
    kind = serializers.ChoiceField(choices=ModelKind.choices, read_only=True)
    # Checked by registry/fallback_services.set_fallback, which knows the versions.
    fallback = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="The fallback policy: {on, chain, reserve_ms} (docs/api.md#fallbacks); null removes it.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unexpected_fields(
            self,
            {
                "name": "A model's name cannot change: clients and URLs use it. Create a new model instead.",
                "kind": "A model's kind cannot change: create a new model or pipeline instead.",
            },
        )
        if not attrs:
            raise serializers.ValidationError("Nothing to change: send description, tags and/or fallback.")
        return attrs


# --- Versions -----------------------------------------------------------------------------------------------------


class ValidationJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ValidationJob
        fields = ["status", "log", "started_at", "finished_at"]
        read_only_fields = fields


LINEAGE_SCHEMA = inline_serializer(
    "Lineage",
    fields={
        "parent": serializers.IntegerField(
            allow_null=True, help_text="Number of the version this one was derived from."
        ),
        "source_run_url": serializers.URLField(),
        "training_data": serializers.CharField(),
    },
)


class PipelineStageSerializer(serializers.ModelSerializer):
    """One stage of a pipeline version, in the order it runs."""

    model = serializers.CharField(source="version.model.name", read_only=True, help_text="The stage's model.")
    version = serializers.IntegerField(source="version.number", read_only=True, help_text="Its version number.")
    inputs = serializers.DictField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Stage input → its source: `input.<pipeline input>` or `<earlier stage>.<output>`.",
    )

    class Meta:
        model = PipelineStage
        fields = ["position", "name", "model", "version", "inputs", "timeout_ms"]
        read_only_fields = fields


class PipelineUseSerializer(serializers.Serializer):
    """A pipeline version that runs a version as one of its stages."""

    pipeline = serializers.CharField(source="pipeline_version.model.name")
    version = serializers.IntegerField(source="pipeline_version.number")
    status = serializers.ChoiceField(source="pipeline_version.status", choices=VersionStatus.choices)
    stage = serializers.CharField(source="name", help_text="The name of the stage this version is there.")


class VersionSerializer(serializers.ModelSerializer):
    model: serializers.SlugRelatedField[RegisteredModel] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    lineage = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField(help_text="Aliases pointing at this version.")
    validation = serializers.SerializerMethodField(help_text="The latest validation job; null before the first.")
    stages = serializers.SerializerMethodField(help_text="A pipeline version's stages in order; empty for a model.")
    pipeline_outputs = serializers.DictField(
        child=serializers.CharField(),
        source="pipeline_output_map",
        read_only=True,
        allow_null=True,
        help_text="A pipeline version's outputs: output name → `<stage>.<output>`; null for a model.",
    )
    used_by_pipelines = serializers.SerializerMethodField(
        help_text="The pipeline versions that run this version as a stage (those of models the caller may see)."
    )

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "number",
            "status",
            "status_reason",
            "sha256",
            "size_bytes",
            "framework",
            "opset",
            "ir_version",
            "producer",
            "signature",
            "description",
            "tags",
            "metadata",
            "lineage",
            "created_by",
            "aliases",
            "stages",
            "pipeline_outputs",
            "used_by_pipelines",
            *SERVING_FIELDS,
            "validation",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(LINEAGE_SCHEMA)
    def get_lineage(self, obj: ModelVersion) -> dict[str, Any]:
        return {
            "parent": obj.parent.number if obj.parent is not None else None,
            "source_run_url": obj.source_run_url,
            "training_data": obj.training_data,
        }

    def get_aliases(self, obj: ModelVersion) -> list[str]:
        return [alias.name for alias in obj.aliases.all()]

    @extend_schema_field(PipelineStageSerializer(many=True))
    def get_stages(self, obj: ModelVersion) -> list[dict[str, Any]]:
        # Sorted here: the list view prefetches them, a single version reads them now.
        stages = sorted(obj.stages.all(), key=lambda stage: stage.position)
        return cast(list[dict[str, Any]], PipelineStageSerializer(stages, many=True).data)

    @extend_schema_field(PipelineUseSerializer(many=True))
    def get_used_by_pipelines(self, obj: ModelVersion) -> list[dict[str, Any]]:
        # An API key limited to some models (context "model_scope") does not learn of other pipelines.
        key = self.context.get("model_scope")
        uses = [
            stage
            for stage in obj.pipeline_stages.all()
            if key is None or key.allows_model(stage.pipeline_version.model.name)
        ]
        uses.sort(key=lambda stage: (stage.pipeline_version.model.name, -stage.pipeline_version.number))
        return cast(list[dict[str, Any]], PipelineUseSerializer(uses, many=True).data)

    @extend_schema_field(ValidationJobSerializer(allow_null=True))
    def get_validation(self, obj: ModelVersion) -> dict[str, Any] | None:
        # Jobs are prefetched newest first (see the view's queryset).
        job = next(iter(obj.validation_jobs.all()), None)
        return ValidationJobSerializer(job).data if job is not None else None


class WorkerStateSerializer(serializers.Serializer):
    worker = serializers.CharField(help_text="The worker's name (its Celery hostname).")
    loaded = serializers.BooleanField(help_text="Whether its session of this version is in memory.")
    provider = serializers.CharField(allow_null=True, help_text="The execution provider it runs on; null until loaded.")


class VersionDetailSerializer(VersionSerializer):
    """One version, with the live workers serving it (`workers` in the context)."""

    workers = serializers.SerializerMethodField(
        help_text="Live workers serving this version and whether each has it loaded; null if Redis is unreachable."
    )

    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "workers"]
        read_only_fields = fields

    @extend_schema_field(WorkerStateSerializer(many=True, allow_null=True))
    def get_workers(self, obj: ModelVersion) -> list[dict[str, Any]] | None:
        workers = self.context.get("workers")
        if workers is None:
            return None
        return cast(list[dict[str, Any]], WorkerStateSerializer(workers, many=True).data)


class WorkerCommandSerializer(serializers.Serializer):
    """The answer to a load or unload: sent, not yet done."""

    detail = serializers.CharField()
    workers = WorkerStateSerializer(many=True, help_text="The live workers serving the version when it was sent.")


# --- Aliases ------------------------------------------------------------------------------------------------------


class AliasSerializer(serializers.ModelSerializer):
    model: serializers.SlugRelatedField[RegisteredModel] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    version = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = Alias
        fields = ["name", "model", "version", "created_at", "updated_at"]
        read_only_fields = fields


class AliasWriteSerializer(serializers.Serializer):
    """The body of `PUT /api/models/{name}/aliases/{alias}/`; needs `model` in the context."""

    version = serializers.IntegerField(min_value=1, help_text="Number of a ready version of this model.")

    def validate_version(self, number: int) -> ModelVersion:
        model: RegisteredModel = self.context["model"]
        version = ModelVersion.objects.filter(model=model, number=number).first()
        if version is None:
            raise serializers.ValidationError(f"version {number} does not exist on model '{model.name}'.")
        return version

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unexpected_fields(self)
        return attrs
