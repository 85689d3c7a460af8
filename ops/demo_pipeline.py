"""Registers the `sentiment` demo pipeline (registry/demo_pipeline.py builds its graphs) the
way a user would: three stage models uploaded and validated, then a pipeline version of
them validated as a whole and put in production. Idempotent: the same bytes and the same
definition find the existing versions. Used by `bootstrap_demo`, the benchmark and tests."""

from __future__ import annotations

import io
from typing import Any

from registry import demo_pipeline, services
from registry.models import ModelKind, ModelVersion, RegisteredModel, VersionStatus
from registry.pipeline_services import StageSpec, create_pipeline_version


class DemoFailed(Exception):
    pass


def _ready(version: ModelVersion) -> ModelVersion:
    # Validated here rather than by a worker: it must be ready before workers start.
    version = services.validate_now(version)
    if version.status != VersionStatus.READY:
        raise DemoFailed(f"{version} failed validation: {version.status_reason}")
    return version


def _model(name: str, description: str, actor: Any, kind: str = ModelKind.MODEL) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is None:
        model = services.create_model(name=name, description=description, tags=["demo"], actor=actor, kind=kind)
    return model


def register_sentiment(
    actor: Any, *, name: str = demo_pipeline.SENTIMENT_PIPELINE, stage_prefix: str = "", **serving: Any
) -> tuple[ModelVersion, bool]:
    """The pipeline's version in production (pointing the alias only where none is set yet),
    and whether it was created now. `stage_prefix` goes before the stage models' names."""
    stages = []
    for stage, model_name, build in demo_pipeline.SENTIMENT_STAGES:
        model = _model(f"{stage_prefix}{model_name}", f"The {stage} stage of the {name} demo pipeline.", actor)
        uploaded = services.upload_version(model, io.BytesIO(build()), actor=actor)
        stages.append(StageSpec(stage, _ready(uploaded.version)))
    pipeline = _model(
        name,
        "Demo pipeline: a label and scores per English text (preprocess -> classifier -> postprocess).",
        actor,
        ModelKind.PIPELINE,
    )
    outputs = {out: f"{stage}.{tensor}" for out, (stage, tensor) in demo_pipeline.SENTIMENT_OUTPUTS.items()}
    result = create_pipeline_version(pipeline, stages, actor=actor, outputs=outputs, **serving)
    version = _ready(result.version)
    if services.serving_version(pipeline) is None:
        services.set_alias(pipeline, services.PRODUCTION, version, actor=actor)
    return version, result.created
