"""The version page's response-cache form: who may change it, what it refuses, and what it stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from audit.models import AuditEntry
from registry.models import ModelVersion, RegisteredModel
from tests.registry.steps import browser_for, csrf_token, validate

pytestmark = pytest.mark.django_db

Upload = Callable[[RegisteredModel, bytes], ModelVersion]
PAGE = "/models/iris/versions/1/"
FORM = "/models/iris/versions/1/cache/"


def test_viewer_sees_the_setting_but_no_form_and_may_not_post(
    viewer: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload
) -> None:
    version = validate(uploaded(iris, onnx_bytes))
    browser = browser_for(viewer)
    token = csrf_token(browser, PAGE)

    page = browser.get(PAGE).content.decode()
    response = browser.post(FORM, {"cache_ttl_seconds": "60", "csrfmiddlewaretoken": token})

    assert "<tr><th>Response cache</th><td>off</td></tr>" in page
    assert 'id="response-cache"' not in page
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.cache_ttl_seconds == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "greater than or equal to 0"),
        ("604801", "less than or equal to 604800"),
        ("ten", "Enter a whole number."),
        ("", "This field is required."),
    ],
)
def test_a_bad_ttl_is_refused_next_to_the_field(
    owner: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload, value: str, message: str
) -> None:
    version = validate(uploaded(iris, onnx_bytes))
    browser = browser_for(owner)
    token = csrf_token(browser, PAGE)

    response = browser.post(FORM, {"cache_ttl_seconds": value, "csrfmiddlewaretoken": token})

    assert response.status_code == 400
    assert message in response.content.decode()
    version.refresh_from_db()
    assert version.cache_ttl_seconds == 0
    assert not AuditEntry.objects.filter(action="version.updated").exists()


def test_owner_turns_the_cache_on_with_a_warning_about_non_deterministic_models(
    owner: Any, iris: RegisteredModel, onnx_bytes: bytes, uploaded: Upload
) -> None:
    version = validate(uploaded(iris, onnx_bytes))
    browser = browser_for(owner)
    token = csrf_token(browser, PAGE)
    form_page = browser.get(PAGE).content.decode()

    response = browser.post(FORM, {"cache_ttl_seconds": "120", "csrfmiddlewaretoken": token})

    assert "Only for deterministic models" in form_page
    assert response.status_code == 302
    assert response["Location"] == PAGE
    version.refresh_from_db()
    assert version.cache_ttl_seconds == 120
    entry = AuditEntry.objects.get(action="version.updated")
    assert (entry.actor_name, entry.before["cache_ttl_seconds"], entry.after["cache_ttl_seconds"]) == ("olga", 0, 120)
    page = browser.get(PAGE).content.decode()
    assert "answers are reused for 120 s" in page
    assert "<tr><th>Response cache</th><td>120 s</td></tr>" in page
    assert 'value="120"' in page
