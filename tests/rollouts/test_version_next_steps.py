"""A version's page leads on: a ready version offers "make production", "start a canary" and
"start a shadow" to its maintainers (each only where the services allow it; the section comes
from rollouts/version_views.py, loaded by htmx, or as a page without JS), nothing to a
viewer; archiving asks first; once validation ends, nothing on the page says it is running."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry import services
from registry.demo_models import build_mlp
from registry.models import ModelVersion, RegisteredModel
from rollouts import services as rollouts
from tests.support.clients import signed_in

pytestmark = pytest.mark.django_db

Add = Callable[..., ModelVersion]
CANARY_BUTTON = "Start a canary of v2…"
SHADOW_BUTTON = "Start a shadow of v2…"
PRODUCTION_BUTTON = "Make v2 production"


@pytest.fixture
def fraud(owner: Any) -> RegisteredModel:
    return services.create_model(name="fraud", actor=owner)


@pytest.fixture
def add(owner: Any, fraud: RegisteredModel, artifact_root: Path, django_capture_on_commit_callbacks: Any) -> Add:
    def add(data: bytes, *, validate: bool = True, production: bool = False) -> ModelVersion:
        with django_capture_on_commit_callbacks(execute=False):
            version = services.upload_version(fraud, io.BytesIO(data), actor=owner).version
        if validate:
            services.run_validation(version.validation_jobs.get().pk)
            version.refresh_from_db()
        if production:
            services.set_alias(fraud, services.PRODUCTION, version, actor=owner)
        return version

    return add


def page(user: Any, number: int) -> str:
    """The next-steps section as the version page loads it (htmx)."""
    answer = signed_in(user).get(f"/rollouts/models/fraud/versions/{number}/next/", HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    return answer.content.decode()


def test_a_viewer_is_offered_no_next_step(add: Add, viewer: Any) -> None:
    add(build_mlp(4, [8], 3, seed=1), production=True)
    add(build_mlp(4, [8], 3, seed=2))

    version_page = signed_in(viewer).get("/models/fraud/versions/2/").content.decode()
    section = signed_in(viewer).get("/rollouts/models/fraud/versions/2/next/", HTTP_HX_REQUEST="true")

    assert 'id="next-steps"' not in version_page
    assert "Archive this version" not in version_page
    assert section.status_code == 403
    assert PRODUCTION_BUTTON not in section.content.decode()


def test_a_pending_version_offers_nothing_yet(add: Add, owner: Any) -> None:
    add(build_mlp(4, [8], 3, seed=1), production=True)
    add(build_mlp(4, [8], 3, seed=2), validate=False)

    version_page = signed_in(owner).get("/models/fraud/versions/2/").content.decode()

    assert 'id="next-steps"' not in version_page
    assert page(owner, 2) == ""
    assert "Waiting for a worker to start validation" in version_page


def test_an_incompatible_version_is_not_offered_as_canary_or_shadow(add: Add, owner: Any) -> None:
    add(build_mlp(4, [8], 3, seed=1), production=True)
    add(build_mlp(6, [8], 3, seed=2))

    shown = page(owner, 2)

    assert "input &#x27;input&#x27; has shape [-1, 6] in v2, [-1, 4] in production (v1)" in shown
    assert CANARY_BUTTON not in shown
    assert SHADOW_BUTTON not in shown


def test_a_running_rollout_blocks_another_and_says_where_it_is(add: Add, owner: Any) -> None:
    first = add(build_mlp(4, [8], 3, seed=1), production=True)
    add(build_mlp(4, [8], 3, seed=2))
    third = add(build_mlp(4, [8], 3, seed=3))
    running = rollouts.start_shadow(first.model, third, actor=owner)

    shown = page(owner, 2)

    assert CANARY_BUTTON not in shown
    assert f'href="/rollouts/{running.pk}/"' in shown


def test_a_ready_version_offers_production_canary_shadow_and_archive(add: Add, owner: Any) -> None:
    add(build_mlp(4, [8], 3, seed=1), production=True)
    add(build_mlp(4, [8], 3, seed=2))
    browser = signed_in(owner)

    version_page = browser.get("/models/fraud/versions/2/").content.decode()
    shown = page(owner, 2)
    without_js = browser.get("/rollouts/models/fraud/versions/2/next/").content.decode()

    # The version page loads the section, with a real link behind it
    assert 'hx-get="/rollouts/models/fraud/versions/2/next/"' in version_page
    assert 'href="/rollouts/models/fraud/versions/2/next/"' in version_page
    assert '<button type="submit" class="danger">Archive this version…</button>' in version_page
    assert PRODUCTION_BUTTON in shown
    assert "go to v2 at once instead of v1" in shown
    assert f'<button type="submit" class="primary">{CANARY_BUTTON}</button>' in shown
    assert SHADOW_BUTTON in shown
    assert "<html" in without_js
    assert PRODUCTION_BUTTON in without_js
    # The canary button leads to the form with v2 chosen
    form = signed_in(owner).get("/rollouts/new/fraud/", {"kind": "canary", "version": "2"}).content.decode()
    assert '<option value="2" selected>' in form


def test_make_production_from_the_version_page_moves_the_alias(add: Add, owner: Any) -> None:
    add(build_mlp(4, [8], 3, seed=1), production=True)
    second = add(build_mlp(4, [8], 3, seed=2))

    answer = signed_in(owner).post("/models/fraud/", {"alias": "production", "version": "2"})

    assert answer.status_code == 302
    assert services.serving_version(second.model) == second
    shown = page(owner, 2)
    assert "v2 is fraud's production version" in shown
    assert PRODUCTION_BUTTON not in shown
    assert "first move or delete its aliases" in signed_in(owner).get("/models/fraud/versions/2/").content.decode()


def test_after_validation_nothing_says_it_is_still_running(add: Add, owner: Any, fraud: RegisteredModel) -> None:
    version = add(build_mlp(4, [8], 3, seed=1), validate=False)
    browser = signed_in(owner)
    uploaded_message = browser.get(f"/models/fraud/versions/{version.number}/").content.decode()

    services.run_validation(version.validation_jobs.get().pk)
    ready = browser.get("/models/fraud/versions/1/").content.decode()
    polled = browser.get("/models/fraud/versions/1/", HTTP_HX_REQUEST="true").content.decode()

    assert "Validating" in uploaded_message or "Waiting for a worker" in uploaded_message
    for shown in (ready, polled):
        assert "Validation is running" not in shown
        assert "Waiting for a worker" not in shown
        assert 'id="next-steps"' in shown
    assert "Make v1 production" in page(owner, 1)
