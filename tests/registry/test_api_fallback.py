"""PATCH /api/models/{name}/ {"fallback": ...}: what answers when the serving version fails.

Personas: `owner` maintains `fraud`; `viewer` reads only. Versions are validated here (no worker).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel, VersionStatus

pytestmark = pytest.mark.django_db

Add = Callable[..., ModelVersion]
CHAIN = [{"kind": "cache", "ttl_seconds": 600}, {"kind": "version", "version": 1}, {"kind": "human_review"}]


@pytest.fixture
def add(owner: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any) -> Add:
    """Upload an MLP to a model (created when missing) and validate it; `production` points the alias at it."""

    def add(name: str, data: bytes, *, production: bool = False) -> ModelVersion:
        model = RegisteredModel.objects.filter(name=name).first() or services.create_model(name=name, actor=owner)
        with django_capture_on_commit_callbacks(execute=False):
            version = services.upload_version(model, io.BytesIO(data), actor=owner).version
        services.run_validation(version.validation_jobs.get().pk)
        version.refresh_from_db()
        assert version.status == VersionStatus.READY, version.status_reason
        if production:
            services.set_alias(model, services.PRODUCTION, version, actor=owner)
        return version

    return add


@pytest.fixture
def fraud_v2(add: Add) -> ModelVersion:
    """fraud v1 (a smaller MLP) and v2 in production, both FP32 [batch, 4] -> FP32 [batch, 3]."""
    add("fraud", build_mlp(4, [4], 3, seed=1))
    return add("fraud", build_mlp(4, [32], 3, seed=2), production=True)


def stored(name: str = "fraud") -> Any:
    return RegisteredModel.objects.get(name=name).fallback


def test_viewer_cannot_set_a_fallback(viewer_api: APIClient, fraud_v2: ModelVersion) -> None:
    response = viewer_api.patch("/api/models/fraud/", {"fallback": {"chain": CHAIN}}, format="json")

    assert response.status_code == 403
    assert stored() is None


@pytest.mark.parametrize(
    ("fallback", "message"),
    [
        ({"chain": []}, "chain must be a non-empty list"),
        ({"chain": [{"kind": "human_review"}, {"kind": "cache"}]}, "must be the chain's last step"),
        ({"on": ["crash"], "chain": CHAIN}, "'crash' is not a failure"),
        ({"chain": [{"kind": "version", "version": 9}]}, "fraud has no version 9"),
        ({"chain": [{"kind": "version", "model": "nope", "version": 1}]}, "there is no model 'nope'"),
        ("everything", "must be an object"),
    ],
)
def test_a_bad_fallback_is_refused_and_nothing_changes(
    owner_api: APIClient, fraud_v2: ModelVersion, fallback: Any, message: str
) -> None:
    response = owner_api.patch("/api/models/fraud/", {"fallback": fallback}, format="json")

    assert response.status_code == 400
    assert message in response.json()["fallback"][0]
    assert stored() is None
    assert not AuditEntry.objects.filter(action="model.fallback_set").exists()


def test_a_version_with_other_tensors_cannot_be_a_fallback(
    owner_api: APIClient, fraud_v2: ModelVersion, add: Add
) -> None:
    add("wide", build_mlp(8, [4], 3))

    response = owner_api.patch(
        "/api/models/fraud/",
        {"fallback": {"chain": [{"kind": "version", "model": "wide", "version": 1}]}},
        format="json",
    )

    assert response.status_code == 400
    assert "wide v1 cannot answer for fraud (version 2): input 'input' has shape [-1, 8] there" in str(response.json())
    assert stored() is None


def test_an_archived_version_cannot_be_a_fallback(owner_api: APIClient, owner: Any, fraud_v2: ModelVersion) -> None:
    services.archive_version(ModelVersion.objects.get(model__name="fraud", number=1), actor=owner)

    response = owner_api.patch("/api/models/fraud/", {"fallback": {"chain": CHAIN}}, format="json")

    assert response.status_code == 400
    assert "fraud v1 is archived; only a ready version can be a fallback" in response.json()["fallback"][0]


def test_maintainer_sets_a_fallback_chain_and_it_is_audited(owner_api: APIClient, fraud_v2: ModelVersion) -> None:
    response = owner_api.patch(
        "/api/models/fraud/", {"fallback": {"on": ["model_error", "timeout"], "chain": CHAIN}}, format="json"
    )

    assert response.status_code == 200, response.json()
    expected = {
        "on": ["timeout", "model_error"],
        "chain": [
            {"kind": "cache", "ttl_seconds": 600},
            {"kind": "version", "version": 1},
            {"kind": "human_review", "status": 200},
        ],
        "reserve_ms": 100,
    }
    assert response.json()["fallback"] == expected
    assert stored() == expected
    assert owner_api.get("/api/models/fraud/").json()["fallback"] == expected
    entry = AuditEntry.objects.get(action="model.fallback_set")
    assert entry.before == {"fallback": None}
    assert entry.after == {"fallback": expected}


def test_another_models_version_can_answer_and_null_removes_the_fallback(
    owner_api: APIClient, fraud_v2: ModelVersion, add: Add
) -> None:
    add("fraud-small", build_mlp(4, [2], 3, seed=5))
    chain = [{"kind": "version", "model": "fraud-small", "version": 1}, {"kind": "human_review", "status": 202}]

    set_response = owner_api.patch("/api/models/fraud/", {"fallback": {"chain": chain}}, format="json")
    assert set_response.status_code == 200, set_response.json()
    assert stored()["chain"][0] == {"kind": "version", "model": "fraud-small", "version": 1}

    cleared = owner_api.patch("/api/models/fraud/", {"fallback": None}, format="json")
    assert cleared.status_code == 200
    assert cleared.json()["fallback"] is None
    assert stored() is None
    assert AuditEntry.objects.filter(action="model.fallback_set").count() == 2


def test_a_fallback_version_cannot_be_archived_until_the_chain_changes(
    owner_api: APIClient, owner: Any, fraud_v2: ModelVersion, add: Add
) -> None:
    small = add("fraud-small", build_mlp(4, [2], 3, seed=5))
    chain = [{"kind": "version", "model": "fraud-small", "version": 1}]
    assert owner_api.patch("/api/models/fraud/", {"fallback": {"chain": chain}}, format="json").status_code == 200

    with pytest.raises(services.RegistryError, match="is a fallback of fraud: change that fallback chain first"):
        services.archive_version(small, actor=owner)
    small.refresh_from_db()
    assert small.status == VersionStatus.READY

    owner_api.patch("/api/models/fraud/", {"fallback": None}, format="json")
    assert services.archive_version(small, actor=owner).status == VersionStatus.ARCHIVED
