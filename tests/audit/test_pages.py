"""The audit page: newest first, filtered, paginated, read-only."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.services import record
from registry import services
from registry.models import RegisteredModel

pytestmark = pytest.mark.django_db


def test_empty_audit_page_says_where_changes_come_from(client: Client, viewer: Any) -> None:
    client.force_login(viewer)

    text = client.get("/audit/").content.decode()

    assert "Nothing recorded yet." in text
    assert 'href="/models/"' in text


def test_entries_are_newest_first_with_the_fields_they_changed(
    client: Client, viewer: Any, owner: Any, iris: RegisteredModel
) -> None:
    services.update_model(iris, actor=owner, description="Better iris")
    client.force_login(viewer)

    text = client.get("/audit/").content.decode()

    assert text.index("<code>model.updated</code>") < text.index("<code>model.created</code>")
    assert "<code>description</code>: Iris flower classifier → Better iris" in text
    assert 'href="/models/iris/">iris</a>' in text  # each entry links to its object


def test_filters_by_action_object_type_and_actor(
    client: Client, viewer: Any, owner: Any, admin: Any, iris: RegisteredModel
) -> None:
    services.create_model(name="resnet", actor=admin)
    services.update_model(iris, actor=owner, description="changed")
    client.force_login(viewer)

    by_action = client.get("/audit/", {"action": "model.updated"}).content.decode()
    by_actor = client.get("/audit/", {"actor": "ada"}).content.decode()
    by_type = client.get("/audit/", {"object_type": "registry.modelversion"}).content.decode()

    assert re.findall(r"<td><code>([a-z._]+)</code></td>", by_action) == ["model.updated"]
    assert "resnet" in by_actor
    assert 'href="/models/resnet/">resnet</a>' in by_actor
    assert 'href="/models/iris/">iris</a>' not in by_actor
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
    assert "<code>n</code>: 59" in first
    assert second.count("<code>model.touched</code>") == 10
    assert "<code>n</code>: 0<" in second
    assert 'href="?action=model.touched&amp;page=2"' in first
    assert "Page 2 of 2" in second


def test_audit_page_changes_nothing(client: Client, admin: Any, iris: RegisteredModel) -> None:
    client.force_login(admin)

    text = client.get("/audit/").content.decode()
    post = client.post("/audit/")

    forms = re.findall(r"<form[^>]*>", text)
    assert all('method="get"' in form or 'action="/logout/"' in form for form in forms)
    assert post.status_code == 405


def test_a_bad_date_is_named_next_to_its_field_and_lists_nothing(
    client: Client, viewer: Any, iris: RegisteredModel
) -> None:
    client.force_login(viewer)

    answer = client.get("/audit/", {"since": "yesterday", "until": "2026-13-01"})

    assert answer.status_code == 400
    text = answer.content.decode()
    assert "&#x27;yesterday&#x27; is not a date: write YYYY-MM-DD" in text
    assert "&#x27;2026-13-01&#x27; is not a date" in text
    assert "<code>model.created</code>" not in text


def test_filters_by_model_and_date_range(client: Client, viewer: Any, owner: Any, iris: RegisteredModel) -> None:
    other = services.create_model(name="resnet", actor=owner)
    services.update_model(other, actor=owner, description="changed")
    client.force_login(viewer)
    today = timezone.localdate()

    by_model = client.get("/audit/", {"model": "iris"}).content.decode()
    today_only = client.get("/audit/", {"since": today.isoformat(), "until": today.isoformat()}).content.decode()
    tomorrow = client.get("/audit/", {"since": (today + dt.timedelta(days=1)).isoformat()}).content.decode()
    swapped = client.get("/audit/", {"since": today.isoformat(), "until": (today - dt.timedelta(days=1)).isoformat()})

    assert re.findall(r"<td><code>([a-z._]+)</code></td>", by_model) == ["model.created"]
    assert 'href="/models/iris/">iris</a>' in by_model
    assert len(re.findall(r"<code>model\.[a-z]+</code>", today_only)) == 3
    assert "No entry matches these filters." in tomorrow
    assert "The last day comes before the first" in swapped.content.decode()


def test_a_page_of_entries_stays_compact_whatever_the_snapshots_hold(
    client: Client, viewer: Any, owner: Any, iris: RegisteredModel
) -> None:
    big = {f"field_{i}": "x" * 500 for i in range(40)}
    record(owner, "model.touched", iris, before=None, after=big)
    client.force_login(viewer)

    text = client.get("/audit/", {"action": "model.touched"}).content.decode()

    assert "x" * 61 not in text  # every value cut short
    assert "36 more fields" in text  # four shown, the rest folded
    assert "<pre>" not in text
