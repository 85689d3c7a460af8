"""/api/audit/: read-only, filtered by object, action and actor."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services
from registry.models import RegisteredModel

pytestmark = pytest.mark.django_db


def test_audit_is_read_only(owner_api: APIClient, admin_api: APIClient, fraud: RegisteredModel) -> None:
    entry = AuditEntry.objects.get(action="model.created")
    url = f"/api/audit/{entry.pk}/"

    post = admin_api.post("/api/audit/", {"action": "forged"}, format="json")
    put = admin_api.put(url, {"action": "forged"}, format="json")
    patch = owner_api.patch(url, {"action": "forged"}, format="json")
    delete = admin_api.delete(url)

    assert [r.status_code for r in (post, put, patch, delete)] == [405, 405, 405, 405]
    assert "not allowed" in delete.json()["detail"]
    assert AuditEntry.objects.count() == 1
    entry.refresh_from_db()
    assert entry.action == "model.created"


def test_anonymous_cannot_read_the_audit_log(anonymous_api: APIClient, fraud: RegisteredModel) -> None:
    response = anonymous_api.get("/api/audit/")

    assert response.status_code == 403
    assert AuditEntry.objects.count() == 1


def test_audit_filters_by_object_action_and_actor(
    viewer_api: APIClient, owner: Any, maintainer: Any, fraud: RegisteredModel
) -> None:
    services.update_model(fraud, actor=owner, description="new")

    by_actor = viewer_api.get("/api/audit/", {"actor": "otto"})
    by_action = viewer_api.get("/api/audit/", {"action": "model.updated"})
    by_object = viewer_api.get("/api/audit/", {"object_type": "registry.registeredmodel", "object_id": str(fraud.pk)})
    one = viewer_api.get(f"/api/audit/{AuditEntry.objects.get(action='model.updated').pk}/")

    assert by_actor.status_code == 200
    assert [(e["action"], e["object_repr"]) for e in by_actor.json()["results"]] == [("model.created", "churn")]
    assert [e["after"]["description"] for e in by_action.json()["results"]] == ["new"]
    assert [e["action"] for e in by_object.json()["results"]] == ["model.updated", "model.created"]
    assert one.status_code == 200
    assert one.json()["before"]["description"] == "Card fraud scores"
    assert AuditEntry.objects.count() == 3


def test_a_bad_date_filter_is_a_400_naming_the_parameter(viewer_api: APIClient, fraud: RegisteredModel) -> None:
    response = viewer_api.get("/api/audit/", {"until": "soon"})

    assert response.status_code == 400
    assert response.json() == {"until": "'soon' is not a date: write YYYY-MM-DD, e.g. 2026-12-06."}


def test_audit_filters_by_model_and_date_range(
    viewer_api: APIClient, owner: Any, fraud: RegisteredModel, iris: RegisteredModel
) -> None:
    today = timezone.localdate()

    by_model = viewer_api.get("/api/audit/", {"model": "fraud"})
    in_range = viewer_api.get("/api/audit/", {"since": today.isoformat(), "until": today.isoformat()})
    later = viewer_api.get("/api/audit/", {"since": (today + dt.timedelta(days=1)).isoformat()})

    assert by_model.status_code == 200
    assert [(e["action"], e["object_id"]) for e in by_model.json()["results"]] == [("model.created", str(fraud.pk))]
    assert in_range.json()["count"] == AuditEntry.objects.count() == 2
    assert later.json()["count"] == 0
