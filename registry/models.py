from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$",
    "Use 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit.",
)


class ModelKind(models.TextChoices):
    MODEL = "model", "Model"
    # Versions made of stages, each a ready version of another model (registry/pipelines.py).
    PIPELINE = "pipeline", "Pipeline"


class RegisteredModel(models.Model):
    """A named model that Turnout serves; its versions hold the artifacts, or, for a
    pipeline, the stages."""

    # The path to the registered model's name: the audit API shows an API key limited to
    # some models only the entries about their objects (audit.api.entries_in_key_scope).
    AUDIT_MODEL_NAME = "name"

    name = models.CharField(max_length=64, unique=True, validators=[NAME_VALIDATOR])
    kind = models.CharField(max_length=16, choices=ModelKind.choices, default=ModelKind.MODEL)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="owned_models"
    )
    # Users granted maintainer rights on this model besides its owner.
    maintainers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="maintained_models")
    # The number the next version gets; incremented under a row lock so numbers
    # have no gaps or duplicates under concurrent uploads.
    next_version_number = models.PositiveIntegerField(default=1)
    # What answers when the serving version fails (registry/fallback_policy.py): the failures
    # that trigger it and the chain of fallbacks, in order. None: failures reach the client.
    fallback = models.JSONField(
        null=True,
        blank=True,
        help_text="{'on': [timeout, model_error, overload], 'chain': [cache, version, human_review], ...}",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_pipeline(self) -> bool:
        return self.kind == ModelKind.PIPELINE


PIPELINE_FRAMEWORK = "pipeline"
MAX_CACHE_TTL_SECONDS = 7 * 24 * 3600


class VersionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    VALIDATING = "validating", "Validating"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    # Retired by a maintainer: not served, offered, aliased or routed to, but kept
    # with its artifact and audit trail, and restorable.
    ARCHIVED = "archived", "Archived"


class ExecutionProvider(models.TextChoices):
    AUTO = "auto", "CUDA when available, else CPU"
    CUDA = "cuda", "CUDA only"
    CPU = "cpu", "CPU only"


class ModelVersion(models.Model):
    """One immutable ONNX artifact of a model, with its signature and serving settings."""

    AUDIT_MODEL_NAME = "model__name"  # see RegisteredModel.AUDIT_MODEL_NAME

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.PENDING)
    status_reason = models.TextField(blank=True, help_text="Why validation failed, in words a user can act on.")

    # The artifact: content-addressed, never rewritten once stored.
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    artifact = models.CharField(
        max_length=255, blank=True, help_text="Storage name; empty once a failed upload's file is removed."
    )
    framework = models.CharField(max_length=32, default="onnx")
    opset = models.PositiveIntegerField(null=True, blank=True)
    ir_version = models.PositiveIntegerField(null=True, blank=True)
    producer = models.CharField(max_length=200, blank=True)
    signature = models.JSONField(
        null=True, blank=True, help_text="Inputs and outputs in Open Inference Protocol terms."
    )
    # A pipeline version's outputs, in order: [[output name, "<stage>.<stage output>"], ...]; null for a
    # model. A list, not an object: PostgreSQL's jsonb would reorder the keys.
    pipeline_outputs = models.JSONField(null=True, blank=True)

    # Metadata and lineage.
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children")
    source_run_url = models.URLField(max_length=500, blank=True)
    training_data = models.CharField(max_length=500, blank=True, help_text="A reference to the training data.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    # Serving configuration (Triton's dynamic batching settings).
    max_batch_size = models.PositiveIntegerField(default=64, validators=[MinValueValidator(1), MaxValueValidator(4096)])
    max_queue_delay_ms = models.FloatField(default=2.0, validators=[MinValueValidator(0), MaxValueValidator(10_000)])
    preferred_batch_sizes = models.JSONField(default=list, blank=True)
    max_queue_size = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    default_timeout_ms = models.PositiveIntegerField(
        default=10_000, validators=[MinValueValidator(1), MaxValueValidator(600_000)]
    )
    execution_provider = models.CharField(
        max_length=8, choices=ExecutionProvider.choices, default=ExecutionProvider.AUTO
    )
    warmup = models.BooleanField(default=True, help_text="Load and warm up on every worker at start.")
    intra_op_threads = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(256)],
        help_text="onnxruntime intra-op threads per session; 0: the worker's TURNOUT_WORKER_INTRA_OP_THREADS.",
    )
    # Off by default: only a deterministic model may answer a repeated input from the cache.
    cache_ttl_seconds = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(MAX_CACHE_TTL_SECONDS)],
        help_text="Seconds an answer is reused for the same input and requested outputs; 0: no response cache.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "number"],
                name="registry_version_unique_number",
                violation_error_message="This model already has a version with this number.",
            ),
            models.UniqueConstraint(
                fields=["model", "sha256"],
                name="registry_version_unique_artifact",
                violation_error_message="This model already has a version with these exact bytes.",
            ),
            models.CheckConstraint(
                # An archived version that had failed lacks it too; a pipeline's stages hold its artifacts.
                condition=Q(status__in=["failed", "archived"]) | ~Q(artifact="") | Q(framework=PIPELINE_FRAMEWORK),
                name="registry_version_artifact_unless_failed",
                violation_error_message="Only a failed or archived version, or a pipeline, may lack an artifact.",
            ),
        ]
        indexes = [
            # registry_check and the orphan scan look versions up by artifact hash.
            models.Index(fields=["sha256"], name="registry_version_sha_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"

    @property
    def is_ready(self) -> bool:
        return self.status == VersionStatus.READY

    @property
    def is_pipeline(self) -> bool:
        return self.framework == PIPELINE_FRAMEWORK

    @property
    def pipeline_output_map(self) -> dict[str, str] | None:
        """The pipeline's outputs as name -> source, in their order; None for a model."""
        if self.pipeline_outputs is None:
            return None
        return {str(name): str(source) for name, source in self.pipeline_outputs}


class PipelineStage(models.Model):
    """One stage of a pipeline version: a ready version of another model, run on what the
    wiring feeds it, under its own deadline. Immutable like the version it belongs to."""

    AUDIT_MODEL_NAME = "pipeline_version__model__name"  # see RegisteredModel.AUDIT_MODEL_NAME

    pipeline_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=32)
    # PROTECT: a version that a pipeline runs cannot disappear from under it.
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="pipeline_stages")
    # Stage input name -> "input.<pipeline input>" or "<earlier stage>.<its output>".
    inputs = models.JSONField(default=dict)
    timeout_ms = models.PositiveIntegerField(
        default=0, help_text="The stage's own deadline; 0: only the request's deadline bounds it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pipeline_version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline_version", "position"],
                name="registry_stage_unique_position",
                violation_error_message="This pipeline version already has a stage at this position.",
            ),
            models.UniqueConstraint(
                fields=["pipeline_version", "name"],
                name="registry_stage_unique_name",
                violation_error_message="This pipeline version already has a stage with this name.",
            ),
        ]
        # The index on `version` (a foreign key) serves "which pipelines run this version".

    def __str__(self) -> str:
        return f"{self.pipeline_version} stage {self.name}"


class Alias(models.Model):
    """A name (`production`, `staging`, ...) pointing at one ready version of a model."""

    AUDIT_MODEL_NAME = "model__name"  # see RegisteredModel.AUDIT_MODEL_NAME

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=64, validators=[NAME_VALIDATOR])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "name"],
                name="registry_alias_unique_name",
                violation_error_message="This model already has an alias with this name.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ValidationJob(models.Model):
    """The background validation of one version: a row first, a Celery message second."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="validation_jobs")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    log = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"validation of {self.version} ({self.status})"


class QuantizationMethod(models.TextChoices):
    INT8_DYNAMIC = "int8_dynamic", "INT8 dynamic"
    FP16 = "fp16", "FP16"


class QuantizationJob(models.Model):
    """The background conversion of a ready version to a cheaper precision; its result is a
    new version of the same model whose parent is the source (registry/quantization_jobs.py)."""

    AUDIT_MODEL_NAME = "version__model__name"  # see RegisteredModel.AUDIT_MODEL_NAME

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="quantization_jobs")
    method = models.CharField(max_length=16, choices=QuantizationMethod.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.CharField(max_length=200, blank=True, help_text="The step running now, in words.")
    reason = models.TextField(blank=True, help_text="Why the job failed, in words a user can act on.")
    log = models.TextField(blank=True, help_text="What the conversion did, step by step.")
    result = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="quantized_by_jobs"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two clicks race to the same conversion: the second insert fails here. A failed job
            # does not count, so it can be tried again.
            models.UniqueConstraint(
                fields=["version", "method"],
                condition=Q(status__in=["queued", "running", "succeeded"]),
                name="registry_quantization_once_per_method",
                violation_error_message="This version is already being or has been quantized this way.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} quantization of {self.version} ({self.status})"

    @property
    def in_progress(self) -> bool:
        """Still converting, or its result still being validated."""
        if self.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            return True
        return self.result is not None and self.result.status in (VersionStatus.PENDING, VersionStatus.VALIDATING)
