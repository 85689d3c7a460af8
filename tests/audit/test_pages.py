"""The audit page: newest first, filtered, paginated, read-only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from audit.services import record
from registry import services
from registry.models import RegisteredModel

pytestmark = pytest.mark.django_db


def test_empty_audit_page_says_where_changes_come_from(client: Client, viewer: Any) -> None:
    client.force_login(viewer)

    text = client.get("/audit/").content.decode()

    assert "Nothing recorded yet." in text
    assert 'href="/models/"' in text


def test_entries_are_newest_first_with_before_and_after(
    client: Client, viewer: Any, owner: Any, iris: RegisteredModel
) -> None:
    services.update_model(iris, actor=owner, description="Better iris")
    client.force_login(viewer)

    text = client.get("/audit/").content.decode()

    assert text.index("<code>model.updated</code>") < text.index("<code>model.created</code>")
    assert "<details><summary>before → after</summary>" in text
    assert "&quot;description&quot;: &quot;Iris flower classifier&quot;" in text
    assert "&quot;description&quot;: &quot;Better iris&quot;" in text


def test_filters_by_action_object_type_and_actor(
    client: Client, viewer: Any, owner: Any, admin: Any, iris: RegisteredModel
) -> None:
    services.create_model(name="resnet", actor=admin)
    services.update_model(iris, actor=owner, description="changed")
    client.force_login(viewer)

    by_action = client.get("/audit/", {"action": "model.updated"}).content.decode()
    by_actor = client.get("/audit/", {"actor": "ada"}).content.decode()
    by_type = client.get("/audit/", {"object_type": "registry.modelversion"}).content.decode()

    assert re.findall(r"<code>([a-z.]+)</code>", by_action) == ["model.updated"]
    assert "resnet" in by_actor
    assert "iris (registry.registeredmodel" not in by_actor
    assert '<option value="ada" selected>' in by_actor
    assert "No entry matches these filters." in by_type


def test_fifty_entries_a_page_and_page_links_keep_the_filters(
    client: Client, viewer: Any, owner: Any, iris: RegisteredModel
) -> None:
    for number in range(60):
        record(owner, "model.touched", iris, after={"n": number})
    client.force_login(viewer)

    first = client.get("/audit/", {"action": "model.touched"}).content.decode()
    second = client.get("/audit/", {"action": "model.touched", "page": "2"}).content.decode()

    assert first.count("<code>model.touched</code>") == 50
    assert "&quot;n&quot;: 59" in first
    assert second.count("<code>model.touched</code>") == 10
    assert "&quot;n&quot;: 0" in second
    assert 'href="?action=model.touched&amp;page=2"' in first
    assert "Page 2 of 2" in second


def test_audit_page_changes_nothing(client: Client, admin: Any, iris: RegisteredModel) -> None:
    client.force_login(admin)

    text = client.get("/audit/").content.decode()
    post = client.post("/audit/")

    forms = re.findall(r"<form[^>]*>", text)
    assert all('method="get"' in form or 'action="/logout/"' in form for form in forms)
    assert post.status_code == 405
