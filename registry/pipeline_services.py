"""Registry business logic for pipelines: a version made of stages. The REST API, the
dashboard and the demo call these; the rest of a pipeline's life (aliases, archive,
rollouts, serving settings) goes through the same services as a model's."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from django.db import transaction

from audit.services import record
from registry.models import PIPELINE_FRAMEWORK, ModelVersion, PipelineStage, RegisteredModel, VersionStatus
from registry.pipelines import CLIENT, StagePlan, WiringError, wire
from registry.services import (
    METADATA_FIELDS,
    SERVING_FIELDS,
    RegistryError,
    UploadResult,
    start_validation,
    version_snapshot,
)
from registry.signature import Signature, TensorSpec


class PipelineRefused(RegistryError):
    """A pipeline that does not fit together; names the stage and tensor where it can."""

    def __init__(self, message: str, stage: str = "", tensor: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.tensor = tensor


def about_outputs(error: PipelineRefused) -> bool:
    """Whether a refusal concerns the pipeline's outputs rather than a stage (where forms show it)."""
    return str(error).startswith(("pipeline output", "the pipeline has no outputs"))


@dataclass
class StageSpec:
    """A stage as a user asks for it: which version runs, on what, for how long at most."""

    name: str
    version: ModelVersion
    inputs: dict[str, str] = field(default_factory=dict)
    timeout_ms: int = 0


def check_stages(pipeline: RegisteredModel, stages: list[StageSpec], outputs: dict[str, str] | None) -> Any:
    """The wiring of `stages`, or PipelineRefused naming the stage (and tensor) that does not fit."""
    if not pipeline.is_pipeline:
        raise RegistryError(f"'{pipeline.name}' is a model, not a pipeline: upload versions to it instead")
    for position, stage in enumerate(stages):
        label = stage.name or f"#{position + 1}"
        version = stage.version
        if version.model_id == pipeline.pk or version.is_pipeline:
            raise PipelineRefused(f"stage '{label}': a stage runs a model's version; pipelines do not nest", label)
        if version.status != VersionStatus.READY:
            raise PipelineRefused(
                f"stage '{label}': {version} is {version.status}; only a ready version can be a stage", label
            )
        if not isinstance(stage.timeout_ms, int) or not 0 <= stage.timeout_ms <= 600_000:
            raise PipelineRefused(f"stage '{label}': timeout_ms must be between 0 and 600000", label)
        if not isinstance(stage.inputs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in stage.inputs.items()
        ):
            raise PipelineRefused(f"stage '{label}': inputs must map input names to source names", label)
    plans = [
        StagePlan(s.name, cast(Signature, s.version.signature), s.inputs, s.timeout_ms, str(s.version)) for s in stages
    ]
    try:
        return wire(plans, outputs)
    except WiringError as error:
        raise PipelineRefused(str(error), error.stage, error.tensor) from None


def definition_of(stages: list[StageSpec], wiring: Any) -> bytes:
    """The canonical bytes of a pipeline version: its identity, as an artifact's bytes are a model version's."""
    return orjson.dumps(
        {
            "stages": [
                {
                    "name": plan.name,
                    "version": stage.version.sha256,
                    "model": stage.version.model.name,
                    "number": stage.version.number,
                    "inputs": dict(sorted(plan.inputs.items())),
                    "timeout_ms": plan.timeout_ms,
                }
                for stage, plan in zip(stages, wiring.stages, strict=True)
            ],
            "outputs": [[name, source] for name, source in wiring.outputs.items()],  # in order
        },
        option=orjson.OPT_SORT_KEYS,
    )


def create_pipeline_version(
    pipeline: RegisteredModel,
    stages: list[StageSpec],
    *,
    actor: Any,
    outputs: dict[str, str] | None = None,
    **fields: Any,
) -> UploadResult:
    """A new pipeline version from ready stage versions, checked now and validated as a
    whole (a smoke run of the chain) before it can serve. The same definition again
    returns the existing version."""
    unknown = set(fields) - set(SERVING_FIELDS) - set(METADATA_FIELDS)
    if unknown:
        raise RegistryError(f"unknown version fields: {', '.join(sorted(unknown))}")
    wiring = check_stages(pipeline, stages, outputs)
    definition = definition_of(stages, wiring)
    sha256 = hashlib.sha256(definition).hexdigest()
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=pipeline.pk)
        existing = ModelVersion.objects.filter(model=locked, sha256=sha256).first()
        if existing is not None:
            return UploadResult(existing, created=False)
        # Lock the stage versions in id order (archive_version locks a version row too), so
        # a stage cannot be archived between the check above and the rows below.
        ids = sorted({stage.version.pk for stage in stages})
        current = {v.pk: v for v in ModelVersion.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        for stage in stages:
            if current[stage.version.pk].status != VersionStatus.READY:
                raise PipelineRefused(
                    f"stage '{stage.name}': {stage.version} is {current[stage.version.pk].status}; "
                    "only a ready version can be a stage",
                    stage.name,
                )
        version = ModelVersion.objects.create(
            model=locked,
            number=locked.next_version_number,
            sha256=sha256,
            size_bytes=len(definition),
            artifact="",
            framework=PIPELINE_FRAMEWORK,
            pipeline_outputs=[[name, source] for name, source in wiring.outputs.items()],
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            parent=ModelVersion.objects.filter(model=locked).order_by("-number").first(),
            **fields,
        )
        PipelineStage.objects.bulk_create(
            PipelineStage(
                pipeline_version=version,
                position=position,
                name=plan.name,
                version=stage.version,
                inputs=dict(plan.inputs),
                timeout_ms=plan.timeout_ms,
            )
            for position, (stage, plan) in enumerate(zip(stages, wiring.stages, strict=True))
        )
        locked.next_version_number += 1
        locked.save(update_fields=["next_version_number", "updated_at"])
        record(actor, "version.created", version, after=pipeline_snapshot(version))
        start_validation(version)
    return UploadResult(version, created=True)


def pipeline_snapshot(version: ModelVersion) -> dict[str, Any]:
    snapshot = version_snapshot(version)
    snapshot["stages"] = [
        {"name": s.name, "version": str(s.version), "inputs": s.inputs, "timeout_ms": s.timeout_ms}
        for s in version.stages.select_related("version__model").order_by("position")
    ]
    snapshot["outputs"] = version.pipeline_output_map
    return snapshot


def pipelines_using(version: ModelVersion) -> list[PipelineStage]:
    """Lineage the other way: the pipeline versions that run `version` as a stage."""
    return list(
        version.pipeline_stages.select_related("pipeline_version__model").order_by(
            "pipeline_version__model__name", "-pipeline_version__number"
        )
    )


# --- What the pages show ----------------------------------------------------------------------------


def _spec_text(spec: TensorSpec | None) -> str:
    return f"{spec['datatype']} {spec['shape']}" if spec else ""


def _specs(signature: Signature | None, kind: str) -> dict[str, TensorSpec]:
    specs: list[TensorSpec] = signature["inputs" if kind == "inputs" else "outputs"] if signature else []
    return {spec["name"]: spec for spec in specs}


def pipeline_layout(version: ModelVersion) -> dict[str, Any]:
    """A pipeline version's `stages` in order, its `wiring` (per stage input: the tensor that
    feeds it, with both declared types) and its `pipeline_outputs`, for its page."""
    stages = list(version.stages.select_related("version__model").order_by("position"))
    outputs_of = {stage.name: _specs(stage.version.signature, "outputs") for stage in stages}
    client = _specs(version.signature, "inputs")  # known once validation has run
    wiring = []
    for stage in stages:
        own = _specs(stage.version.signature, "inputs")
        for tensor, source in stage.inputs.items():
            owner, _, name = source.partition(".")
            # Before validation the pipeline's inputs are not known: the client sends what the stage takes.
            given = client.get(name, own.get(tensor)) if owner == CLIENT else outputs_of.get(owner, {}).get(name)
            wiring.append(
                {
                    "stage": stage.name,
                    "input": tensor,
                    "spec": _spec_text(own.get(tensor)),
                    "from_client": owner == CLIENT,
                    "source": source,
                    "tensor": name,
                    "source_spec": _spec_text(given),
                }
            )
    served = _specs(version.signature, "outputs")
    outputs = [
        {"name": name, "source": source, "spec": _spec_text(served.get(name))}
        for name, source in (version.pipeline_output_map or {}).items()
    ]
    return {"stages": stages, "wiring": wiring, "pipeline_outputs": outputs}
