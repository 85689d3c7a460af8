"""Registry business logic: the REST API, the dashboard, the admin and the
management commands all call these functions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import IO, Any

import redis
from django.conf import settings
from django.db import transaction

from audit.services import record
from controlplane.redis_client import get_redis, redis_keys
from dataplane import control
from dataplane.liveness import NOT_LOADED, served_by_now
from registry import storage
from registry.events import catalog_changed
from registry.models import (
    Alias,
    ModelKind,
    ModelVersion,
    RegisteredModel,
    ValidationJob,
    VersionStatus,
)
from registry.tasks import validate_version
from registry.validation_jobs import run_validation

logger = logging.getLogger(__name__)

PRODUCTION = "production"

# What a user may set on a version after upload (the artifact itself never changes).
SERVING_FIELDS = (
    "max_batch_size",
    "max_queue_delay_ms",
    "preferred_batch_sizes",
    "max_queue_size",
    "default_timeout_ms",
    "execution_provider",
    "warmup",
    "intra_op_threads",
    "cache_ttl_seconds",
)
METADATA_FIELDS = ("description", "tags", "metadata", "source_run_url", "training_data")


class RegistryError(Exception):
    """A request the registry refuses, with a message for the user."""


class ArtifactTooLarge(RegistryError):
    pass


class WorkersUnreachable(RegistryError):
    """Redis, through which commands reach the workers, cannot be reached."""


@dataclass
class UploadResult:
    version: ModelVersion
    created: bool


def model_snapshot(model: RegisteredModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "kind": model.kind,
        "description": model.description,
        "tags": model.tags,
        "owner": model.owner.get_username() if model.owner else None,
    }


def version_snapshot(version: ModelVersion) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "number": version.number,
        "status": version.status,
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
    }
    snapshot.update({field: getattr(version, field) for field in (*SERVING_FIELDS, *METADATA_FIELDS)})
    return snapshot


RESERVED_NAMES = frozenset({"new"})  # /models/new/ is the creation page


def create_model(
    *,
    name: str,
    actor: Any,
    description: str = "",
    tags: list[str] | None = None,
    owner: Any = None,
    kind: str = ModelKind.MODEL,
) -> RegisteredModel:
    """A new model, or with `kind="pipeline"` a new pipeline (registry/pipeline_services.py gives it versions)."""
    if name in RESERVED_NAMES:
        raise RegistryError(f"'{name}' is reserved; choose another model name")
    if kind not in ModelKind.values:
        raise RegistryError(f"kind must be one of {', '.join(ModelKind.values)}")
    with transaction.atomic():
        model = RegisteredModel.objects.create(
            name=name, description=description, tags=tags or [], owner=owner or actor, kind=kind
        )
        record(actor, "model.created", model, after=model_snapshot(model))
    return model


def update_model(model: RegisteredModel, *, actor: Any, **changes: Any) -> RegisteredModel:
    with transaction.atomic():
        before = model_snapshot(model)
        for field, value in changes.items():
            setattr(model, field, value)
        model.save()
        record(actor, "model.updated", model, before=before, after=model_snapshot(model))
    return model


def upload_version(
    model: RegisteredModel,
    stream: IO[bytes],
    *,
    actor: Any,
    parent_number: int | None = None,
    **fields: Any,
) -> UploadResult:
    """Store an uploaded artifact and queue its validation.

    The same bytes uploaded again to the same model return the existing version.
    """
    if model.is_pipeline:
        raise RegistryError(
            f"'{model.name}' is a pipeline: its versions are made of stages (ready versions of other models), "
            "not uploaded"
        )
    sha256, size = storage.hash_stream(stream)
    limit = settings.TURNOUT["MAX_ARTIFACT_BYTES"]
    if size > limit:
        raise ArtifactTooLarge(f"the file is {size} bytes, over the limit of {limit} bytes")
    if size == 0:
        raise RegistryError("the file is empty")
    unknown = set(fields) - set(SERVING_FIELDS) - set(METADATA_FIELDS)
    if unknown:
        raise RegistryError(f"unknown version fields: {', '.join(sorted(unknown))}")

    existing = ModelVersion.objects.filter(model=model, sha256=sha256).first()
    if existing is not None:
        return UploadResult(existing, created=False)
    if parent_number is not None and not ModelVersion.objects.filter(model=model, number=parent_number).exists():
        raise RegistryError(f"parent version {parent_number} does not exist on model '{model.name}'")

    # Stored before the transaction: the file is content-addressed, so a
    # concurrent upload of the same bytes finds it in place. If the transaction
    # below fails, registry_check reports the file as an orphan.
    name = storage.store(stream, sha256)
    with transaction.atomic():
        # Lock the model row: numbers come from it, in order, with no gaps.
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        existing = ModelVersion.objects.filter(model=locked, sha256=sha256).first()
        if existing is not None:
            return UploadResult(existing, created=False)
        parent = None
        if parent_number is not None:
            parent = ModelVersion.objects.filter(model=locked, number=parent_number).first()
            if parent is None:
                raise RegistryError(f"parent version {parent_number} does not exist on model '{locked.name}'")
        version = ModelVersion.objects.create(
            model=locked,
            number=locked.next_version_number,
            sha256=sha256,
            size_bytes=size,
            artifact=name,
            parent=parent,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            **fields,
        )
        locked.next_version_number += 1
        locked.save(update_fields=["next_version_number", "updated_at"])
        record(actor, "version.uploaded", version, after=version_snapshot(version))
        start_validation(version)
    return UploadResult(version, created=True)


def start_validation(version: ModelVersion) -> ValidationJob:
    """A job row now, the Celery message once the transaction commits."""
    job = ValidationJob.objects.create(version=version)
    transaction.on_commit(lambda: validate_version.delay(job.pk))
    return job


def validate_now(version: ModelVersion) -> ModelVersion:
    """Run a pending validation in this process instead of waiting for a worker
    (the quick start and the benchmark need the version ready before workers start)."""
    if version.status in (VersionStatus.PENDING, VersionStatus.VALIDATING):
        job = ValidationJob.objects.filter(version=version).order_by("-created_at").first()
        run_validation((job or start_validation(version)).pk)
        version.refresh_from_db()
    return version


def update_version(version: ModelVersion, *, actor: Any, **changes: Any) -> ModelVersion:
    """Change serving settings or metadata; the artifact and its signature never change."""
    unknown = set(changes) - set(SERVING_FIELDS) - set(METADATA_FIELDS)
    if unknown:
        raise RegistryError(f"these fields cannot be changed: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        before = version_snapshot(locked)
        for field, value in changes.items():
            setattr(locked, field, value)
        locked.full_clean(exclude=["model", "parent", "created_by"])
        locked.save()
        record(actor, "version.updated", locked, before=before, after=version_snapshot(locked))
        catalog_changed(locked.model.name)
    return locked


def set_alias(model: RegisteredModel, name: str, version: ModelVersion, *, actor: Any) -> Alias:
    """Point `name` at `version`, atomically; only a ready version of the same model."""
    if version.model_id != model.pk:
        raise RegistryError(f"version {version.number} belongs to another model")
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status != VersionStatus.READY:
            raise RegistryError(f"version {locked.number} is {locked.status}; only a ready version can take an alias")
        alias = Alias.objects.select_for_update().filter(model=model, name=name).first()
        before = {"version": alias.version.number} if alias else None
        if alias is None:
            alias = Alias(model=model, name=name, version=locked)
            alias.full_clean(exclude=["model", "version"])
        else:
            alias.version = locked
        alias.save()
        record(
            actor, "alias.moved" if before else "alias.created", alias, before=before, after={"version": locked.number}
        )
        # Workers re-read the registry on this notice and load the production
        # version at once (workers/serving.py), so no command is needed here.
        catalog_changed(model.name)
    return alias


# Rollout statuses that hold traffic (rollouts.models.ACTIVE; the registry cannot
# import the rollouts app, which builds on it).
ACTIVE_ROLLOUT_STATUSES = ("running", "paused")


def archive_version(version: ModelVersion, *, actor: Any) -> ModelVersion:
    """Retire a ready or failed version: no longer served, offered, aliased or routed to.

    Its artifact, signature and audit trail stay; `restore_version` brings it back.
    Refused while an alias points at it or an active rollout uses it, so nothing
    that serves traffic loses its version.
    """
    with transaction.atomic():
        # set_alias and a rollout's start lock the same row, so each of them
        # either sees the archive or is seen by it.
        locked = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
        if locked.status == VersionStatus.ARCHIVED:
            raise RegistryError(f"version {locked.number} is already archived")
        if locked.status not in (VersionStatus.READY, VersionStatus.FAILED):
            raise RegistryError(
                f"version {locked.number} is {locked.status}; wait until its validation has finished, then archive it"
            )
        aliases = sorted(locked.aliases.values_list("name", flat=True))
        if aliases:
            names = ", ".join(f"'{name}'" for name in aliases)
            which, point, them = ("alias", "points", "it") if len(aliases) == 1 else ("aliases", "point", "them")
            raise RegistryError(f"the {which} {names} {point} at version {locked.number}: move or delete {them} first")
        used = (
            locked.pipeline_stages.exclude(pipeline_version__status__in=[VersionStatus.ARCHIVED, VersionStatus.FAILED])
            .select_related("pipeline_version__model")
            .first()
        )
        if used is not None:
            raise RegistryError(
                f"version {locked.number} is stage '{used.name}' of pipeline {used.pipeline_version}: "
                "archive that pipeline version first"
            )
        users = fallback_users(locked)
        if users:
            raise RegistryError(
                f"version {locked.number} is a fallback of {', '.join(users)}: change that fallback chain first"
            )
        rollout_id = (
            locked.arms.filter(rollout__status__in=ACTIVE_ROLLOUT_STATUSES).values_list("rollout_id", flat=True).first()
        )
        if rollout_id is not None:
            raise RegistryError(f"version {locked.number} takes part in active rollout #{rollout_id}: end it first")
        before = locked.status
        locked.status = VersionStatus.ARCHIVED
        locked.save(update_fields=["status", "updated_at"])
        record(actor, "version.archived", locked, before={"status": before}, after={"status": locked.status})
        catalog_changed(locked.model.name)
    return locked


def fallback_users(version: ModelVersion) -> list[str]:
    """Names of the models whose fallback chain (registry/fallback_policy.py) names this version."""
    found = []
    step = {"kind": "version", "version": version.number}
    for other in RegisteredModel.objects.filter(fallback__chain__contains=[step]).only("name", "fallback"):
        for item in (other.fallback or {}).get("chain", []):
            same = item.get("kind") == "version" and item.get("version") == version.number
            if same and item.get("model", other.name) == version.model.name:
                found.append(other.name)
                break
    return found


def restore_version(version: ModelVersion, *, actor: Any) -> ModelVersion:
    """Undo an archive: a version that had passed validation is ready again, one that failed stays failed."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
        if locked.status != VersionStatus.ARCHIVED:
            raise RegistryError(
                f"version {locked.number} is {locked.status}, not archived; there is nothing to restore"
            )
        # Only validation sets a signature, and only on success.
        locked.status = VersionStatus.READY if locked.signature is not None else VersionStatus.FAILED
        locked.save(update_fields=["status", "updated_at"])
        record(actor, "version.restored", locked, before={"status": "archived"}, after={"status": locked.status})
        catalog_changed(locked.model.name)
    return locked


def delete_alias(alias: Alias, *, actor: Any) -> None:
    with transaction.atomic():
        record(actor, "alias.deleted", alias, before={"version": alias.version.number})
        alias.delete()
        catalog_changed(alias.model.name)


def serving_version(model: RegisteredModel) -> ModelVersion | None:
    """The version a request without a version number gets: the `production` alias."""
    alias = Alias.objects.select_related("version").filter(model=model, name=PRODUCTION).first()
    return alias.version if alias else None


# --- Sessions on the workers --------------------------------------------------


@dataclass(frozen=True)
class WorkerState:
    """One live worker serving a version: whether its session is loaded, and where."""

    worker: str
    loaded: bool
    provider: str | None


def worker_states(version: ModelVersion) -> list[WorkerState]:
    """The live workers serving `version` now; raises WorkersUnreachable when Redis is down."""
    try:
        served = served_by_now(get_redis(), redis_keys(), version.pk, float(settings.TURNOUT["WORKER_TTL_SECONDS"]))
    except redis.RedisError as exc:
        raise WorkersUnreachable(f"the workers cannot be reached: {exc}") from None
    return [
        WorkerState(worker=name, loaded=state != NOT_LOADED, provider=None if state == NOT_LOADED else state)
        for name, state in sorted(served.items())
    ]


def load_version(version: ModelVersion, *, actor: Any) -> list[WorkerState]:
    """Ask every live worker serving `version` to load (and warm up) its session now.

    Returns the workers serving it when asked; each reports its session in the
    version's served_by hash once it has acted.
    """
    return _command_workers(version, control.LOAD, actor)


def unload_version(version: ModelVersion, *, actor: Any) -> list[WorkerState]:
    """Ask every live worker to free `version`'s session; its next request loads it again."""
    return _command_workers(version, control.UNLOAD, actor)


def _command_workers(version: ModelVersion, action: str, actor: Any) -> list[WorkerState]:
    with transaction.atomic():
        # Locked, so an archive in flight either finishes first (and this refuses)
        # or waits until the command is sent.
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status != VersionStatus.READY:
            raise RegistryError(f"version {locked.number} is {locked.status}; only a ready version can be {action}ed")
        workers = worker_states(locked)
        try:
            # Sent before the audit entry commits: a command that cannot be sent
            # leaves no entry claiming it was.
            control.send(get_redis(), redis_keys(), action, locked.pk)
        except redis.RedisError as exc:
            raise WorkersUnreachable(f"the workers cannot be reached: {exc}") from None
        record(actor, f"version.{action}_requested", locked, after={"workers": [w.worker for w in workers]})
    return workers
