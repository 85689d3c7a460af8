"""/api/models/: list, search, create and change registered models."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services
from registry.models import RegisteredModel

pytestmark = pytest.mark.django_db


def test_anonymous_cannot_list_models(anonymous_api: APIClient, fraud: RegisteredModel) -> None:
    response = anonymous_api.get("/api/models/")

    assert response.status_code == 403
    assert "detail" in response.json()
    assert RegisteredModel.objects.filter(name="fraud").exists()


def test_viewer_cannot_create_a_model_and_is_told_who_can(viewer_api: APIClient) -> None:
    response = viewer_api.post("/api/models/", {"name": "spam"}, format="json")

    assert response.status_code == 403
    assert "maintainers" in response.json()["detail"]
    assert not RegisteredModel.objects.filter(name="spam").exists()
    assert not AuditEntry.objects.filter(action="model.created").exists()


def test_invalid_or_taken_names_are_refused(owner_api: APIClient, fraud: RegisteredModel) -> None:
    bad = owner_api.post("/api/models/", {"name": "Bad Name!"}, format="json")
    taken = owner_api.post("/api/models/", {"name": "fraud"}, format="json")
    unknown = owner_api.post("/api/models/", {"name": "ok", "colour": "red"}, format="json")
    bad_tags = owner_api.post("/api/models/", {"name": "ok", "tags": "not-a-list"}, format="json")

    assert bad.status_code == 400
    assert "lowercase" in bad.json()["name"][0]
    assert taken.status_code == 400
    assert "already exists" in taken.json()["name"][0]
    assert unknown.status_code == 400
    assert "Unknown field" in unknown.json()["colour"][0]
    assert bad_tags.status_code == 400
    assert "tags" in bad_tags.json()
    assert list(RegisteredModel.objects.values_list("name", flat=True)) == ["fraud"]


def test_maintainer_creates_a_model_and_owns_it(owner_api: APIClient, owner: Any) -> None:
    response = owner_api.post(
        "/api/models/", {"name": "spam", "description": "Spam filter", "tags": ["text"]}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "spam"
    assert body["owner"] == "olga"
    assert body["aliases"] == {}
    assert body["latest_version"] is None
    model = RegisteredModel.objects.get(name="spam")
    assert model.owner == owner
    assert model.tags == ["text"]
    assert AuditEntry.objects.filter(action="model.created", object_id=str(model.pk)).count() == 1


def test_list_searches_name_description_and_tags_and_filters_by_tag(
    viewer_api: APIClient, owner: Any, fraud: RegisteredModel
) -> None:
    services.create_model(name="spam", actor=owner, description="Mail filter", tags=["text", "nlp"])
    services.create_model(name="churn-forecast", actor=owner, tags=["tabular"])

    everything = viewer_api.get("/api/models/")
    by_description = viewer_api.get("/api/models/", {"q": "mail"})
    by_tag_text = viewer_api.get("/api/models/", {"q": "nlp"})
    by_tag = viewer_api.get("/api/models/", {"tag": "tabular"})

    assert everything.status_code == 200
    assert everything.json()["count"] == RegisteredModel.objects.count() == 3
    assert [m["name"] for m in by_description.json()["results"]] == ["spam"]
    assert [m["name"] for m in by_tag_text.json()["results"]] == ["spam"]
    assert [m["name"] for m in by_tag.json()["results"]] == ["churn-forecast", "fraud"]


def test_retrieve_shows_owner_maintainers_and_aliases(
    viewer_api: APIClient, fraud: RegisteredModel, maintainer: Any
) -> None:
    fraud.maintainers.add(maintainer)

    response = viewer_api.get("/api/models/fraud/")
    missing = viewer_api.get("/api/models/nope/")

    assert response.status_code == 200
    body = response.json()
    assert body["owner"] == "olga"
    assert body["maintainers"] == ["otto"]
    assert body["tags"] == ["tabular"]
    assert {"created_at", "updated_at", "latest_version", "aliases"} <= body.keys()
    assert missing.status_code == 404


def test_outsider_cannot_change_someone_elses_model(maintainer_api: APIClient, fraud: RegisteredModel) -> None:
    response = maintainer_api.patch("/api/models/fraud/", {"description": "mine now"}, format="json")

    assert response.status_code == 403
    assert "maintainers of model 'fraud'" in response.json()["detail"]
    fraud.refresh_from_db()
    assert fraud.description == "Card fraud scores"


def test_maintainer_changes_description_and_tags_but_not_the_name(owner_api: APIClient, fraud: RegisteredModel) -> None:
    changed = owner_api.patch("/api/models/fraud/", {"description": "v2", "tags": ["tabular", "cards"]}, format="json")
    renamed = owner_api.patch("/api/models/fraud/", {"name": "fraud2"}, format="json")
    put = owner_api.put("/api/models/fraud/", {"description": "x"}, format="json")

    assert changed.status_code == 200
    assert changed.json()["tags"] == ["tabular", "cards"]
    assert renamed.status_code == 400
    assert "cannot change" in renamed.json()["name"][0]
    assert put.status_code == 405
    fraud.refresh_from_db()
    assert (fraud.name, fraud.description, fraud.tags) == ("fraud", "v2", ["tabular", "cards"])
    entry = AuditEntry.objects.get(action="model.updated")
    assert entry.before["description"] == "Card fraud scores"
    assert entry.after["description"] == "v2"


def test_admin_changes_any_model(admin_api: APIClient, fraud: RegisteredModel) -> None:
    response = admin_api.patch("/api/models/fraud/", {"tags": []}, format="json")

    assert response.status_code == 200
    fraud.refresh_from_db()
    assert fraud.tags == []
    assert AuditEntry.objects.get(action="model.updated").actor_name == "ada"
