"""The models list with its search, its empty states, and the new-model form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEntry
from registry import services
from registry.models import ModelVersion, RegisteredModel
from tests.registry.steps import browser_for, csrf_token, validate

pytestmark = pytest.mark.django_db


def test_pages_require_login(client: Client, iris: RegisteredModel) -> None:
    for page in ("/models/", "/models/new/", "/models/iris/", "/models/iris/upload/", "/audit/"):
        response = client.get(page)

        assert response.status_code == 302, page
        assert response["Location"].startswith("/login/")


def test_empty_list_tells_a_viewer_to_ask_for_the_maintainers_group(client: Client, viewer: Any) -> None:
    client.force_login(viewer)

    text = client.get("/models/").content.decode()

    assert "No models yet." in text
    assert "ask an admin to add you to the maintainers group" in text
    assert 'href="/models/new/"' not in text


def test_empty_list_offers_a_maintainer_the_new_model_form(client: Client, owner: Any) -> None:
    client.force_login(owner)

    text = client.get("/models/").content.decode()

    assert "No models yet." in text
    assert '<a href="/models/new/">Create the first model</a>' in text


def test_list_shows_latest_version_status_and_production(
    client: Client,
    viewer: Any,
    owner: Any,
    iris: RegisteredModel,
    onnx_bytes: bytes,
    uploaded: Callable[[RegisteredModel, bytes], ModelVersion],
) -> None:
    from registry.demo_models import build_mlp

    ready = validate(uploaded(iris, onnx_bytes))
    services.set_alias(iris, "production", ready, actor=owner)
    uploaded(iris, build_mlp(4, [8], 3, seed=7))
    client.force_login(viewer)

    text = client.get("/models/").content.decode()

    assert '<a href="/models/iris/">iris</a>' in text
    assert "Iris flower classifier" in text
    assert '<span class="tag">tabular</span>' in text
    assert "<td>olga</td>" in text
    assert '<a href="/models/iris/versions/2/">v2</a>' in text
    assert '<span class="status status-pending">pending</span>' in text
    assert '<td><a href="/models/iris/versions/1/">v1</a></td>' in text


@pytest.mark.parametrize("query", ["IRIS", "flower", "tabu"])
def test_search_matches_name_description_and_tags(client: Client, owner: Any, query: str) -> None:
    services.create_model(name="iris", actor=owner, description="Iris flower classifier", tags=["tabular"])
    services.create_model(name="resnet", actor=owner, description="Images", tags=["vision"])
    client.force_login(owner)

    full = client.get("/models/", {"q": query})
    partial = client.get("/models/", {"q": query}, headers={"HX-Request": "true"})

    assert b"<html" in full.content
    assert b'hx-trigger="keyup changed delay:300ms, search"' in full.content
    assert f'value="{query}"'.encode() in full.content
    assert b"<html" not in partial.content
    assert partial.content.decode().startswith('<div id="model-table">')
    for response in (full, partial):
        assert b'href="/models/iris/"' in response.content
        assert b'href="/models/resnet/"' not in response.content


def test_search_without_match_says_so_and_links_back(client: Client, viewer: Any, iris: RegisteredModel) -> None:
    client.force_login(viewer)

    text = client.get("/models/", {"q": "nothing-like-this"}, headers={"HX-Request": "true"}).content.decode()

    assert "No model matches “nothing-like-this”" in text
    assert '<a href="/models/">Show all models</a>' in text


def test_viewer_may_not_create_a_model(viewer: Any) -> None:
    browser = browser_for(viewer)
    token = csrf_token(browser, "/models/")

    page = browser.get("/models/new/")
    post = browser.post("/models/new/", {"name": "sneaky", "csrfmiddlewaretoken": token})

    assert page.status_code == 403
    assert post.status_code == 403
    assert "ask an admin to add you to it" in post.content.decode()
    assert not RegisteredModel.objects.filter(name="sneaky").exists()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("Bad Name", "Use 1-64 lowercase letters"),
        ("new", "reserved by the dashboard"),
        ("iris", "A model named &#x27;iris&#x27; already exists."),
        ("", "This field is required."),
    ],
)
def test_new_model_form_says_what_is_wrong_next_to_the_name(
    owner: Any, iris: RegisteredModel, name: str, error: str
) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, "/models/new/")

    response = browser.post("/models/new/", {"name": name, "tags": "a", "csrfmiddlewaretoken": token})

    assert response.status_code == 200
    text = response.content.decode()
    assert error in text
    # The error sits in the name field's block, before the description field.
    assert text.index(error) < text.index('for="id_description"')
    assert RegisteredModel.objects.count() == 1


def test_new_model_form_creates_the_model_with_its_tags_and_audits_it(owner: Any) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, "/models/new/")

    response = browser.post(
        "/models/new/",
        {"name": "resnet", "description": "Images", "tags": " vision, resnet,,vision ", "csrfmiddlewaretoken": token},
    )

    assert response.status_code == 302
    assert response["Location"] == "/models/resnet/upload/"
    model = RegisteredModel.objects.get(name="resnet")
    assert (model.description, model.tags, model.owner) == ("Images", ["vision", "resnet"], owner)
    assert AuditEntry.objects.filter(action="model.created", actor_name="olga", object_id=str(model.pk)).exists()
    assert "Model &#x27;resnet&#x27; created" in browser.get(response["Location"]).content.decode()
