"""The model page's fallback section: what answers when the version fails, set and removed by
maintainers through the same service as the API; refusals next to the field they concern."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from audit.models import AuditEntry
from registry.demo_models import build_mlp
from registry.models import RegisteredModel
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db

FORM = {
    "on": ["timeout", "model_error"],
    "cache": "on",
    "cache_ttl_seconds": "600",
    "version": "1",
    "human_review": "on",
    "human_review_status": "202",
    "reserve_ms": "150",
}


@pytest.fixture
def fraud(register: Callable[..., Any]) -> RegisteredModel:
    """fraud v1 and v2, v2 in production, both FP32 [batch, 4] -> FP32 [batch, 3]."""
    register("fraud")
    register("fraud", onnx_bytes=build_mlp(4, [16], 3, seed=3))
    return RegisteredModel.objects.get(name="fraud")


def test_without_a_fallback_the_page_says_failures_reach_clients_and_only_maintainers_get_the_form(
    fraud: RegisteredModel, owner: Any, viewer: Any
) -> None:
    as_owner = signed_in(owner).get("/models/fraud/").content.decode()
    as_viewer = signed_in(viewer).get("/models/fraud/").content.decode()

    assert "No fallback: when fraud's version times out, fails or is overloaded, clients get the error." in as_owner
    assert 'action="/models/fraud/fallback/"' in as_owner
    assert "No fallback" in as_viewer
    assert 'action="/models/fraud/fallback/"' not in as_viewer


def test_a_viewer_cannot_set_a_fallback(fraud: RegisteredModel, viewer: Any) -> None:
    response = signed_in(viewer).post("/models/fraud/fallback/", FORM)

    assert response.status_code == 403
    assert RegisteredModel.objects.get(name="fraud").fallback is None


def test_a_maintainer_sets_the_chain_and_the_page_lists_it(fraud: RegisteredModel, owner: Any) -> None:
    client = signed_in(owner)

    response = client.post("/models/fraud/fallback/", FORM)

    assert response.status_code == 302
    assert response["Location"] == "/models/fraud/#fallback"
    assert RegisteredModel.objects.get(name="fraud").fallback == {
        "on": ["timeout", "model_error"],
        "chain": [
            {"kind": "cache", "ttl_seconds": 600},
            {"kind": "version", "version": 1},
            {"kind": "human_review", "status": 202},
        ],
        "reserve_ms": 150,
    }
    assert AuditEntry.objects.filter(action="model.fallback_set").count() == 1
    page = client.get("/models/fraud/").content.decode()
    assert "When fraud's version fails (timeout, model_error), these answer in turn" in page
    assert "<li>the last good answer to the same input (kept 600 s)</li>" in page
    assert "<li>fraud v1</li>" in page
    assert "<li>human review (202, no outputs)</li>" in page
    assert 'value="150"' in page  # the form starts from the chain as it is


@pytest.mark.parametrize(
    ("changes", "field_error"),
    [
        ({"version": "9"}, "Fraud has no version 9<"),
        ({"version": "nope:1"}, "There is no model &#x27;nope&#x27;<"),
        ({"version": "two"}, "Write a version number (2) or another model&#x27;s as name:number"),
        ({"cache_ttl_seconds": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"on": []}, "Choose at least one failure to fall back on."),
    ],
)
def test_a_bad_chain_is_refused_next_to_its_field_and_nothing_changes(
    fraud: RegisteredModel, owner: Any, changes: dict[str, Any], field_error: str
) -> None:
    response = signed_in(owner).post("/models/fraud/fallback/", {**FORM, **changes})

    assert response.status_code == 400
    assert field_error in response.content.decode()
    assert RegisteredModel.objects.get(name="fraud").fallback is None


def test_choosing_no_fallback_at_all_says_to_remove_it_instead(fraud: RegisteredModel, owner: Any) -> None:
    response = signed_in(owner).post(
        "/models/fraud/fallback/",
        {"on": ["timeout"], "cache_ttl_seconds": "60", "human_review_status": "200", "reserve_ms": "0"},
    )

    assert response.status_code == 400
    assert "Choose at least one fallback, or remove the fallback instead." in response.content.decode()


def test_remove_takes_the_fallback_away(fraud: RegisteredModel, owner: Any) -> None:
    client = signed_in(owner)
    client.post("/models/fraud/fallback/", FORM)

    response = client.post("/models/fraud/fallback/", {"remove": "1"})

    assert response.status_code == 302
    assert RegisteredModel.objects.get(name="fraud").fallback is None
    assert "No fallback" in client.get("/models/fraud/").content.decode()
