"""The management API's side of pipelines: the JSON body that creates a pipeline version
(`POST /api/models/{pipeline}/versions/`), and how the service's refusals become field errors.

The stages are checked by `registry.pipeline_services`; this module only resolves what the
body names (a model, and a version number or an alias of it) to versions, among the models
the caller may see, and translates `PipelineRefused` into `{"stages": [...]}` or
`{"outputs": [...]}`.
"""

from __future__ import annotations

import re
from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from registry.api.fields import PG_INT_MAX, JSONObjectField, reject_unexpected_fields, tags_field
from registry.api.version_inputs import ServingFieldsSerializer
from registry.models import NAME_VALIDATOR, Alias, ModelVersion, RegisteredModel, VersionStatus
from registry.pipeline_services import PipelineRefused, StageSpec, about_outputs
from registry.pipelines import MAX_STAGES

ALIAS_NAME = cast(re.Pattern[str], NAME_VALIDATOR.regex)
SOURCE_HELP = "`input.<pipeline input>` (a tensor the client sends) or `<earlier stage>.<its output>`."


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": PG_INT_MAX},
            {"type": "string", "minLength": 1, "maxLength": 64, "pattern": ALIAS_NAME.pattern},
        ],
        "description": "A version number, or the name of one of the model's aliases (e.g. `production`): "
        "the version it points at now is recorded.",
    }
)
class StageVersionField(serializers.Field):
    """A version number (an integer), or an alias name (a string)."""

    default_error_messages = {
        "invalid": 'Send a version number (e.g. 3) or the name of an alias of the model (e.g. "production").'
    }

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, int) and not isinstance(data, bool) and 1 <= data <= PG_INT_MAX:
            return data
        if isinstance(data, str) and ALIAS_NAME.match(data):
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class StageSpecSerializer(serializers.Serializer):
    """One stage as a client asks for it."""

    name = serializers.CharField(
        max_length=32, help_text="The stage's name: 1-32 lowercase letters, digits or `_`, starting with a letter."
    )
    model = serializers.CharField(max_length=64, help_text="The name of the model whose version runs here.")
    version = StageVersionField()
    inputs = serializers.DictField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="Stage input → source, each "
        + SOURCE_HELP
        + " An input left out reads the tensor of the same name from the stage before (the client for the first).",
    )
    timeout_ms = serializers.IntegerField(
        min_value=0,
        max_value=600_000,
        default=0,
        help_text="The stage's own deadline in ms; 0: only the request's deadline bounds it.",
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"Unknown field. A stage has: {', '.join(self.fields)}."] for key in unknown}
                )
        return super().to_internal_value(data)


class PipelineVersionCreateSerializer(ServingFieldsSerializer):
    """A new pipeline version: its stages, its outputs, and optional metadata and serving settings."""

    # Needs `models` (the models the caller may see) in the context; validated_data["stages"]
    # are StageSpecs.

    # max_length goes to the ListSerializer that many=True makes (the stubs do not know it).
    stages = StageSpecSerializer(
        many=True,
        allow_empty=False,
        max_length=MAX_STAGES,  # type: ignore[call-arg]
        help_text="The stages, in the order they run.",
    )
    outputs = serializers.DictField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="Pipeline output → `<stage>.<output>`. Left out: the last stage's outputs under their own names.",
    )
    description = serializers.CharField(required=False, allow_blank=True)
    tags = tags_field(required=False)
    metadata = JSONObjectField(required=False)
    source_run_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    training_data = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unexpected_fields(
            self,
            {
                "file": "A pipeline's versions are made of stages, not uploaded: send `stages` instead.",
                "parent": "A pipeline version's parent is the pipeline's latest version, set for you.",
            },
        )
        self.validate_serving(attrs, None)
        attrs["stages"] = self._resolve(attrs["stages"])
        return attrs

    def _resolve(self, stages: list[dict[str, Any]]) -> list[StageSpec]:
        models: QuerySet[RegisteredModel] = self.context["models"]
        specs: list[StageSpec] = []
        errors: list[str] = []
        for position, stage in enumerate(stages):
            label = stage["name"] or f"#{position + 1}"
            model = models.filter(name=stage["model"]).first()
            wanted = stage["version"]
            version: ModelVersion | None = None
            if model is None:
                # A model out of an API key's scope is as unknown as one that does not exist.
                errors.append(f"stage '{label}': model '{stage['model']}' does not exist")
            elif isinstance(wanted, int):
                version = ModelVersion.objects.select_related("model").filter(model=model, number=wanted).first()
                if version is None:
                    errors.append(f"stage '{label}': model '{model.name}' has no version {wanted}")
            else:
                alias = Alias.objects.select_related("version__model").filter(model=model, name=wanted).first()
                if alias is None:
                    errors.append(f"stage '{label}': model '{model.name}' has no alias '{wanted}'")
                else:
                    version = alias.version
            if version is not None:
                specs.append(StageSpec(stage["name"], version, dict(stage.get("inputs", {})), stage["timeout_ms"]))
        if errors:
            raise serializers.ValidationError({"stages": errors})
        return specs


def refusal_error(error: PipelineRefused) -> exceptions.ValidationError:
    """The service's refusal as a field error: the pipeline's outputs, or its stages."""
    return exceptions.ValidationError({"outputs" if about_outputs(error) else "stages": [str(error)]})


def created_or_existing(data: dict[str, Any], created: bool, model: RegisteredModel) -> Response:
    """201 with a new version; 200 with `duplicate` when the same definition already was one."""
    if created:
        return Response(data, status=status.HTTP_201_CREATED)
    data["duplicate"] = True
    data["detail"] = f"this definition is already version {data['number']} of {model.name}"
    if data["status"] == VersionStatus.ARCHIVED:
        data["detail"] += ", which is archived: restore it to serve it again"
    return Response(data, status=status.HTTP_200_OK)


EXAMPLE_BODY = {
    "stages": [
        {"name": "preprocess", "model": "sentiment-preprocess", "version": 1, "inputs": {"text": "input.text"}},
        {"name": "model", "model": "sentiment-classifier", "version": "production", "timeout_ms": 50},
        {"name": "postprocess", "model": "sentiment-postprocess", "version": 1, "inputs": {"scores": "model.scores"}},
    ],
    "outputs": {"label": "postprocess.label", "confidence": "postprocess.confidence", "scores": "model.scores"},
    "description": "lexicon sentiment, three stages",
    "max_batch_size": 32,
}
EXAMPLES = [
    OpenApiExample(
        "A three-stage pipeline version", value=EXAMPLE_BODY, request_only=True, media_type="application/json"
    ),
    OpenApiExample(
        "Stages that do not fit together",
        value={
            "stages": [
                "stage 'model' input 'counts' (FP32 [-1, 16]) cannot take 'preprocess.counts' (FP32 [-1, 8]): "
                "dimension 1 is 16 there, 8 here"
            ]
        },
        response_only=True,
        status_codes=["400"],
    ),
    OpenApiExample(
        "A stage naming an unknown version",
        value={"stages": ["stage 'model': model 'sentiment-classifier' has no alias 'staging'"]},
        response_only=True,
        status_codes=["400"],
    ),
]
