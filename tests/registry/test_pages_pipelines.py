"""The registry pages of pipelines: creating one, the "new pipeline version" form whose stage
pickers offer only what fits, refusals on the stage row at fault, and the pages that show a
pipeline version's stages, wiring and outputs, and which pipelines use a model's version.

Personas (tests/conftest.py): `owner` (olga) made `chain` and the stage models and maintains
them; `viewer` (vic) reads only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from registry.models import ModelKind, ModelVersion, PipelineStage, RegisteredModel, VersionStatus
from tests.factories import RegisteredModelFactory
from tests.registry.steps import browser_for, csrf_token, validate

pytestmark = pytest.mark.django_db

NEW = "/models/chain/versions/new/"
Upload = Callable[[RegisteredModel, bytes], ModelVersion]


def offered(page: str, row: int) -> list[str]:
    """The values the version picker of stage `row` offers (0-based), the empty one left out."""
    select = re.search(rf'<select name="stage-{row}-version".*?</select>', page, re.S)
    assert select is not None, f"no picker for stage {row}"
    return [value for value in re.findall(r'<option value="([^"]*)"', select.group(0)) if value]


def stage_rows(*rows: dict[str, str], **fields: str) -> dict[str, str]:
    """The form as a browser posts it: `stages`, then `stage-<i>-<field>` per row."""
    data = {"stages": str(len(rows)), **fields}
    for index, row in enumerate(rows):
        data.update({f"stage-{index}-{name}": value for name, value in row.items()})
    return data


def no_pipeline_versions() -> bool:
    return (
        not ModelVersion.objects.filter(model__kind=ModelKind.PIPELINE).exists() and not PipelineStage.objects.exists()
    )


# --- Refusals first ------------------------------------------------------------------------------------------------


def test_viewer_may_not_open_or_post_the_new_pipeline_version_form(
    pipeline: RegisteredModel, viewer: Any, owner: Any
) -> None:
    browser = browser_for(viewer)
    token = csrf_token(browser, "/models/chain/")

    page = browser.get(NEW)
    post = browser.post(NEW, stage_rows({"version": "st-scale:1"}, csrfmiddlewaretoken=token))
    model_page = browser.get("/models/chain/").content.decode()

    assert page.status_code == 403
    assert post.status_code == 403
    assert "ask olga to add you" in post.content.decode()
    assert "New pipeline version" not in model_page
    assert "The owner or a maintainer of this pipeline creates them." in model_page
    assert no_pipeline_versions()


def test_a_model_and_a_pipeline_each_send_to_their_own_new_version_page(
    iris: RegisteredModel, pipeline: RegisteredModel, owner: Any
) -> None:
    browser = browser_for(owner)

    model_form = browser.get("/models/iris/versions/new/")
    pipeline_upload = browser.get("/models/chain/upload/")

    assert model_form.status_code == 302
    assert model_form["Location"] == "/models/iris/upload/"
    assert pipeline_upload.status_code == 302
    assert pipeline_upload["Location"] == NEW
    assert no_pipeline_versions()


def test_refusals_are_shown_on_the_stage_row_or_field_at_fault_and_nothing_is_created(
    pipeline: RegisteredModel, owner: Any, scale_and_widen: dict[str, ModelVersion]
) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, NEW)
    widen = {"version": "st-widen:1"}

    not_by_name = browser.post(NEW, stage_rows(widen, widen, csrfmiddlewaretoken=token)).content.decode()
    mismatch = browser.post(
        NEW, stage_rows(widen, {**widen, "inputs": "x=st_widen.y"}, csrfmiddlewaretoken=token)
    ).content.decode()
    bad_text = browser.post(
        NEW, stage_rows({**widen, "inputs": "x input.x", "timeout_ms": "-5"}, csrfmiddlewaretoken=token)
    ).content.decode()
    no_version = browser.post(NEW, stage_rows({"name": "first"}, csrfmiddlewaretoken=token)).content.decode()
    no_output = browser.post(
        NEW, stage_rows(widen, outputs="wide=st_widen.z", csrfmiddlewaretoken=token)
    ).content.decode()

    # Names left blank are made from the model's; the second stage's input finds no `x` above it.
    second_row = not_by_name.split('<fieldset id="stage-1">')[1]
    assert "Stage &#x27;st_widen_2&#x27; input &#x27;x&#x27; is not wired" in second_row
    mismatch_inputs = mismatch.split('id="id_stage-1-inputs"')[1]
    assert "cannot take &#x27;st_widen.y&#x27; (FP32 [-1, 6]): dimension 1 is 4 there, 6 here." in mismatch_inputs
    assert "Line 1 is not &quot;name=source&quot;" in bad_text
    assert "Ensure this value is greater than or equal to 0." in bad_text
    assert "Choose the version this stage runs." in no_version
    assert (
        "Pipeline output &#x27;wide&#x27; reads &#x27;st_widen.z&#x27;, which no stage produces."
        in (no_output.split('id="id_outputs"')[1])
    )
    assert no_pipeline_versions()


# --- The stage pickers ---------------------------------------------------------------------------------------------


def test_each_picker_offers_only_ready_versions_that_fit_after_the_stages_above(
    pipeline: RegisteredModel, owner: Any, stages: dict[str, ModelVersion], uploaded: Upload
) -> None:
    broken = validate(uploaded(RegisteredModelFactory(name="st-broken", actor=owner), b"not an onnx file"))
    assert broken.status == VersionStatus.FAILED
    browser = browser_for(owner)
    token = csrf_token(browser, NEW)
    htmx = {"HX-Request": "true"}

    first = browser.get(NEW).content.decode()
    after_scale = browser.post(
        NEW, stage_rows({"version": "st-scale:1"}, action="add", csrfmiddlewaretoken=token), headers=htmx
    ).content.decode()
    after_widen = browser.post(
        NEW, stage_rows({"version": "st-widen:1"}, {}, action="refresh", csrfmiddlewaretoken=token), headers=htmx
    ).content.decode()
    removed = browser.post(
        NEW,
        stage_rows({"version": "st-scale:1"}, {"version": "st-widen:1"}, action="remove-0", csrfmiddlewaretoken=token),
    ).content.decode()

    everything = ["st-scale:1", "st-six:1", "st-widen:1"]
    assert offered(first, 0) == everything  # no failed version, and not the pipeline itself
    assert 'hx-post="/models/chain/versions/new/"' in first
    # After scale (y [-1, 4]): six wants x [-1, 6], which nothing above gives.
    assert after_scale.startswith('<form id="pipeline-form"')
    assert offered(after_scale, 1) == ["st-scale:1", "st-widen:1"]
    assert "st-scale v1: takes x FP32 [-1, 4]; gives y FP32 [-1, 4]." in after_scale
    # After widen (y [-1, 6], and the client's x [-1, 4]): all of them.
    assert offered(after_widen, 1) == everything
    assert 'name="stage-1-version"' not in removed
    assert re.search(r'<option value="st-widen:1" selected>', removed)
    assert no_pipeline_versions()


# --- What works ----------------------------------------------------------------------------------------------------


def test_owner_creates_a_pipeline_and_its_version_and_the_pages_show_stages_wiring_and_use(
    owner: Any, viewer: Any, scale_and_widen: dict[str, ModelVersion]
) -> None:
    browser = browser_for(owner)
    token = csrf_token(browser, "/models/new/")

    new_page = browser.get("/models/new/").content.decode()
    created = browser.post(
        "/models/new/",
        {"kind": "pipeline", "name": "chain", "description": "", "tags": "", "csrfmiddlewaretoken": token},
    )
    form = browser.get(NEW).content.decode()
    body = stage_rows(
        {"name": "scale", "version": "st-scale:1", "timeout_ms": "250"},
        {"name": "widen", "version": "st-widen:1", "inputs": '{"x": "scale.y"}'},
        outputs="wide=widen.y\nscaled=scale.y",
        description="two affine stages",
        csrfmiddlewaretoken=token,
    )
    made = browser.post(NEW, body)
    again = browser.post(NEW, body, follow=True)

    assert '<input type="radio" name="kind" value="pipeline"' in new_page
    assert created.status_code == 302
    assert created["Location"] == NEW
    assert RegisteredModel.objects.get(name="chain").kind == ModelKind.PIPELINE
    assert "Add a stage" in form
    assert made.status_code == 302
    assert made["Location"] == "/models/chain/versions/1/"
    assert "Nothing new: these stages are already version 1." in again.content.decode()
    version = ModelVersion.objects.get(model__name="chain")
    assert (version.description, version.pipeline_output_map) == (
        "two affine stages",
        {"wide": "widen.y", "scaled": "scale.y"},
    )
    assert list(version.stages.values_list("name", "timeout_ms", "inputs")) == [
        ("scale", 250, {"x": "input.x"}),
        ("widen", 0, {"x": "scale.y"}),
    ]

    validate(version)
    reader = Client()
    reader.force_login(viewer)
    page = reader.get("/models/chain/versions/1/").content.decode()
    stage_page = reader.get("/models/st-widen/versions/1/").content.decode()
    model_page = reader.get("/models/chain/").content.decode()
    listing = reader.get("/models/").content.decode()

    assert version.status == VersionStatus.READY
    stages_section = page.split('<section id="stages">')[1].split("</section>")[0]
    assert '<a href="/models/st-scale/versions/1/">st-scale v1</a>' in stages_section
    assert "250 ms" in stages_section
    assert '<a href="/dashboard/models/chain/">chain on the dashboard</a>' in stages_section
    wiring = page.split('<section id="wiring">')[1].split("</section>")[0]
    assert "<code>widen.x</code></td><td>FP32 [-1, 4]</td>" in wiring
    assert "<code>scale.y</code></td>" in wiring
    assert "the client's <code>x</code>" in wiring
    assert "<code>wide</code></td><td><code>widen.y</code></td><td>FP32 [-1, 6]</td>" in page
    assert "wiring: 2 stages fit together" in page  # the validation log
    used = stage_page.split('<section id="used-by">')[1].split("</section>")[0]
    assert '<a href="/models/chain/versions/1/">chain v1</a>' in used
    assert "<code>widen</code>" in used
    assert "<code>scale</code> (st-scale v1) → <code>widen</code> (st-widen v1)" in model_page
    assert '<span class="tag">pipeline</span>' in listing
