"""Write serializers for versions: the multipart upload, the change of serving settings and
metadata, and the serving settings both share (the pipeline version's body is
registry/api/pipelines.py). Write serializers refuse fields they do not know.
"""

from __future__ import annotations

from typing import Any, cast

from django.db import models
from rest_framework import serializers

from registry.api.fields import (
    PG_INT_MAX,
    ArtifactFileField,
    FormBooleanField,
    FormJSONListField,
    FormJSONObjectField,
    JSONListField,
    JSONObjectField,
    reject_unexpected_fields,
    tags_field,
)
from registry.models import MAX_CACHE_TTL_SECONDS, ExecutionProvider, ModelVersion, RegisteredModel

IMMUTABLE_VERSION_FIELDS = (
    "model",
    "stages",
    "pipeline_outputs",
    "number",
    "status",
    "status_reason",
    "sha256",
    "size_bytes",
    "artifact",
    "framework",
    "opset",
    "ir_version",
    "producer",
    "signature",
    "parent",
    "created_by",
    "created_at",
    "updated_at",
)


class ServingFieldsSerializer(serializers.Serializer):
    """Triton-style dynamic batching settings, shared by upload and update."""

    max_batch_size = serializers.IntegerField(
        min_value=1, max_value=4096, required=False, help_text="Largest batch a worker runs (1-4096)."
    )
    max_queue_delay_ms = serializers.FloatField(
        min_value=0,
        max_value=10_000,
        required=False,
        help_text="How long a request may wait for others to fill a batch (0-10000 ms).",
    )
    preferred_batch_sizes = JSONListField(
        child=serializers.IntegerField(min_value=1),
        max_length=64,
        required=False,
        help_text="Batch sizes to aim for, each at most max_batch_size.",
    )
    max_queue_size = serializers.IntegerField(
        min_value=1, max_value=PG_INT_MAX, required=False, help_text="Requests queued before new ones are refused."
    )
    default_timeout_ms = serializers.IntegerField(
        min_value=1, max_value=600_000, required=False, help_text="Request timeout when the client sets none."
    )
    execution_provider = serializers.ChoiceField(choices=ExecutionProvider.choices, required=False)
    warmup = FormBooleanField(required=False, help_text="Load and warm up on every worker at start.")
    intra_op_threads = serializers.IntegerField(
        min_value=0,
        max_value=256,
        required=False,
        help_text="onnxruntime intra-op threads for this version's sessions; 0: the worker's setting.",
    )
    cache_ttl_seconds = serializers.IntegerField(
        min_value=0,
        max_value=MAX_CACHE_TTL_SECONDS,
        required=False,
        help_text=(
            f"Seconds an answer is reused for the same input and requested outputs (0-{MAX_CACHE_TTL_SECONDS}); "
            "0: no response cache. Only for deterministic models whose answers depend on the input alone."
        ),
    )

    def validate_serving(self, attrs: dict[str, Any], version: ModelVersion | None) -> None:
        """Cross-field checks against the values the version will end up with."""

        def final(field: str) -> Any:
            if field in attrs:
                return attrs[field]
            if version is not None:
                return getattr(version, field)
            return cast(models.Field, ModelVersion._meta.get_field(field)).get_default()

        max_batch_size = final("max_batch_size")
        preferred = final("preferred_batch_sizes") or []
        errors: dict[str, str] = {}
        if len(set(preferred)) != len(preferred):
            errors["preferred_batch_sizes"] = "List each preferred batch size once."
        too_big = sorted({size for size in preferred if size > max_batch_size})
        if too_big and "preferred_batch_sizes" in attrs:
            errors["preferred_batch_sizes"] = (
                f"Each preferred batch size must be at most max_batch_size ({max_batch_size}); "
                f"{', '.join(map(str, too_big))} {'is' if len(too_big) == 1 else 'are'} larger."
            )
        elif too_big:
            errors["max_batch_size"] = (
                f"max_batch_size must be at least the largest preferred batch size ({max(preferred)}); "
                "lower preferred_batch_sizes in the same request."
            )
        signature = version.signature if version is not None else None
        if "max_batch_size" in attrs and max_batch_size > 1 and signature and not signature.get("batch_dim", True):
            errors["max_batch_size"] = (
                "This model has no batch dimension, so it runs one request at a time: max_batch_size must be 1."
            )
        if errors:
            raise serializers.ValidationError(errors)


class VersionUploadSerializer(ServingFieldsSerializer):
    """A multipart upload: the file, then optional metadata, lineage and serving settings.
    Needs `model` in the context.

    List and object fields (`tags`, `metadata`, `preferred_batch_sizes`) are sent as JSON text.
    """

    file = ArtifactFileField(help_text="The ONNX model file.")
    description = serializers.CharField(required=False, allow_blank=True)
    tags = FormJSONListField(
        child=serializers.CharField(max_length=64),
        max_items=32,
        required=False,
        help_text='JSON list of labels, e.g. `["fraud", "tabular"]`.',
    )
    metadata = FormJSONObjectField(required=False, help_text='JSON object, e.g. `{"auc": 0.91}`.')
    preferred_batch_sizes = FormJSONListField(
        child=serializers.IntegerField(min_value=1),
        max_items=64,
        required=False,
        help_text="JSON list of batch sizes to aim for, each at most max_batch_size, e.g. `[8, 16]`.",
    )
    source_run_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    training_data = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text="A reference to the training data."
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # Declared here, not on the class: `parent` is also the name of a
        # serializer field's attribute pointing at its parent serializer.
        fields["parent"] = serializers.IntegerField(
            min_value=1, required=False, help_text="Number of the version of this model this one was derived from."
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_unexpected_fields(self)
        self.validate_serving(attrs, None)
        # Checked here as well as in the service: the service stores the file
        # before it looks at the parent, and would leave it behind.
        model: RegisteredModel = self.context["model"]
        parent = attrs.get("parent")
        if parent is not None and not ModelVersion.objects.filter(model=model, number=parent).exists():
            raise serializers.ValidationError({"parent": [f"version {parent} does not exist on model '{model.name}'."]})
        return attrs


class VersionUpdateSerializer(ServingFieldsSerializer):
    """Serving settings and metadata; the artifact and everything derived from it never change."""

    description = serializers.CharField(required=False, allow_blank=True)
    tags = tags_field(required=False)
    metadata = JSONObjectField(required=False)
    source_run_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    training_data = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        why = (
            "This field is immutable: a version's artifact, hash, number, status, signature and lineage "
            "never change. Upload a new version instead."
        )
        reject_unexpected_fields(self, dict.fromkeys((*IMMUTABLE_VERSION_FIELDS, "lineage", "validation"), why))
        if not attrs:
            raise serializers.ValidationError(
                f"Nothing to change: send one or more of {', '.join(sorted(self.fields))}."
            )
        self.validate_serving(attrs, self.instance)
        return attrs
