"""A model that lives on fallbacks is visible at a glance: the overview tags it, and its page
says which fallbacks answered and what triggered them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.test import Client

from tests.support.figures import MODEL, observations

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client: Client, viewer: Any, redis_client: redis.Redis) -> Client:
    """The viewer, signed in: any signed-in user reads the dashboard."""
    client.force_login(viewer)
    return client


def test_a_model_answered_mostly_by_fallbacks_is_tagged_on_the_overview_and_explained_on_its_page(
    browser: Client, register: Callable[..., Any], inject: Callable[..., Any]
) -> None:
    register(MODEL)
    served = observations(20, seed=1)
    rescued = [dataclasses.replace(o, fallback="version", fallback_reason="timeout") for o in observations(50, seed=2)]
    reviewed = [
        dataclasses.replace(o, fallback="human_review", fallback_reason="model_error") for o in observations(30, seed=3)
    ]
    inject([*served, *rescued, *reviewed], dt.datetime.now(dt.UTC))

    overview = browser.get("/?window=5m")
    page = browser.get(f"/dashboard/models/{MODEL}/?window=5m")

    assert overview.status_code == page.status_code == 200
    assert b'<span class="tag warn"' in overview.content
    assert b"on fallbacks" in overview.content
    assert b"80.00 %" in overview.content  # 80 of 100 answers came from the chain
    text = page.content.decode()
    assert "Answered through fallbacks: 30 by human_review, 50 by version (80.00 % of its requests)" in text
    assert "after 30 model_error, 50 timeout" in text


def test_a_model_that_answers_for_itself_has_no_tag(
    browser: Client, register: Callable[..., Any], inject: Callable[..., Any]
) -> None:
    register(MODEL)
    inject(observations(50, seed=1), dt.datetime.now(dt.UTC))

    overview = browser.get("/?window=5m")

    assert overview.status_code == 200
    assert b"on fallbacks" not in overview.content
    assert b'<td class="num">0 %</td>' in overview.content
