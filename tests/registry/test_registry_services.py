"""Registry services on the real database and storage: numbering under
concurrency, de-duplication, aliases, clean-up of refused files, consistency."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEntry
from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, VersionStatus


def upload_and_validate(model: Any, data: bytes, actor: Any, capture: Any) -> ModelVersion:
    with capture(execute=False):
        result = services.upload_version(model, io.BytesIO(data), actor=actor)
    services.run_validation(result.version.validation_jobs.get().pk)
    result.version.refresh_from_db()
    return result.version


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_uploads_get_ten_distinct_consecutive_numbers(owner: Any, artifact_root: Path) -> None:
    model = services.create_model(name="racy", actor=owner)
    artifacts = [build_mlp(4, [8], 2, seed=seed) for seed in range(10)]
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def upload(data: bytes) -> None:
        try:
            barrier.wait()
            services.upload_version(model, io.BytesIO(data), actor=owner)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(data,)) for data in artifacts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    numbers = sorted(ModelVersion.objects.filter(model=model).values_list("number", flat=True))
    assert numbers == list(range(1, 11))
    model.refresh_from_db()
    assert model.next_version_number == 11


@pytest.mark.django_db
def test_same_bytes_twice_return_the_existing_version(
    owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    model = services.create_model(name="dedupe", actor=owner)
    data = build_mlp(4, [8], 2)

    with django_capture_on_commit_callbacks(execute=False):
        first = services.upload_version(model, io.BytesIO(data), actor=owner)
        second = services.upload_version(model, io.BytesIO(data), actor=owner)

    assert first.created is True
    assert second.created is False
    assert second.version.pk == first.version.pk
    assert ModelVersion.objects.filter(model=model).count() == 1
    assert len(list(artifact_root.rglob("*.onnx"))) == 1


@pytest.mark.django_db
def test_empty_and_oversized_uploads_are_refused_without_a_trace(
    owner: Any, artifact_root: Path, settings: Any
) -> None:
    model = services.create_model(name="limits", actor=owner)
    settings.TURNOUT = {**settings.TURNOUT, "MAX_ARTIFACT_BYTES": 100}

    with pytest.raises(services.ArtifactTooLarge, match="over the limit of 100 bytes"):
        services.upload_version(model, io.BytesIO(b"x" * 101), actor=owner)
    with pytest.raises(services.RegistryError, match="empty"):
        services.upload_version(model, io.BytesIO(b""), actor=owner)

    assert not ModelVersion.objects.filter(model=model).exists()
    assert list(artifact_root.rglob("*")) == []


@pytest.mark.django_db
def test_alias_only_points_at_ready_versions_and_every_move_is_audited(
    owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    model = services.create_model(name="aliased", actor=owner)
    v1 = upload_and_validate(model, build_mlp(4, [8], 2, seed=1), owner, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        pending = services.upload_version(model, io.BytesIO(build_mlp(4, [8], 2, seed=2)), actor=owner).version

    services.set_alias(model, "production", v1, actor=owner)
    with pytest.raises(services.RegistryError, match="only a ready version can take an alias"):
        services.set_alias(model, "production", pending, actor=owner)

    assert services.serving_version(model) == v1
    services.run_validation(pending.validation_jobs.get().pk)
    pending.refresh_from_db()
    services.set_alias(model, "production", pending, actor=owner)
    assert services.serving_version(model) == pending
    moves = AuditEntry.objects.filter(action__startswith="alias.").order_by("created_at", "id")
    assert [(e.action, e.before, e.after, e.actor_name) for e in moves] == [
        ("alias.created", None, {"version": 1}, "olga"),
        ("alias.moved", {"version": 1}, {"version": 2}, "olga"),
    ]


@pytest.mark.django_db
def test_a_refused_file_leaves_no_file_in_storage(
    owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    model = services.create_model(name="refused", actor=owner)

    version = upload_and_validate(model, b"this is not an onnx model", owner, django_capture_on_commit_callbacks)

    assert version.status == VersionStatus.FAILED
    assert "not a valid ONNX model" in version.status_reason
    assert version.artifact == ""
    assert list(artifact_root.rglob("*.onnx")) == []
    assert version.validation_jobs.get().status == "failed"
    assert AuditEntry.objects.filter(action="version.failed", object_id=str(version.pk)).exists()


@pytest.mark.django_db
def test_registry_check_reports_missing_corrupt_and_orphaned_files(
    owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    model = services.create_model(name="checked", actor=owner)
    good = upload_and_validate(model, build_mlp(4, [8], 2, seed=1), owner, django_capture_on_commit_callbacks)
    bad = upload_and_validate(model, build_mlp(4, [8], 2, seed=2), owner, django_capture_on_commit_callbacks)
    call_command("registry_check")  # clean registry: no error

    (artifact_root / bad.artifact).write_bytes(b"tampered")
    orphan = artifact_root / "sha256" / "ff" / ("f" * 64 + ".onnx")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"stray")
    with pytest.raises(CommandError, match="2 ready versions checked: 0 missing, 1 corrupt, 1 orphaned"):
        call_command("registry_check")

    (artifact_root / good.artifact).unlink()
    with pytest.raises(CommandError, match="1 missing, 1 corrupt, 1 orphaned"):
        call_command("registry_check")


@pytest.mark.django_db
def test_audit_entries_cannot_be_changed_even_in_sql(owner: Any) -> None:
    model = services.create_model(name="audited", actor=owner)
    entry = AuditEntry.objects.get(object_id=str(model.pk), action="model.created")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor_name="mallory")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(ValueError, match="append-only"):
        entry.save()

    entry.refresh_from_db()
    assert entry.actor_name == "olga"
