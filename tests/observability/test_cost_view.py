"""The cost view: worker time per 1,000 requests a version computed, from each request's share
of its batch's run, so a cheaper variant shows what it saves next to its parent."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.test import Client

from observability import queries, rollup
from observability.recorder import Observation
from tests.support.figures import MODEL

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)


def computed(version: str, compute_ms: float, batch_size: int, count: int) -> list[Observation]:
    return [Observation(MODEL, version, "champion", 200, compute_ms + 1.0, 0.05, 0.5, compute_ms, batch_size)] * count


def test_each_request_pays_its_share_of_the_batch_and_hits_and_fallbacks_pay_nothing(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    # 100 requests alone (4 ms each) and 300 in batches of 8 (a 16 ms run: 2 ms each)
    alone = computed("1", 4.0, 1, 100)
    batched = computed("1", 16.0, 8, 300)
    hit = dataclasses.replace(alone[0], cache="hit", compute_ms=0.0, queue_ms=0.0)
    rescued = dataclasses.replace(alone[0], fallback="version", fallback_reason="timeout")
    inject([*alone, *batched, hit, rescued], now - 2 * MINUTE)

    live = queries.summary("5m", model=MODEL, version="1", now=now)

    # 1,000 requests at 2.5 ms of worker time each; the hit and the fallback answer add nothing
    assert live.compute_ms_per_1000 == pytest.approx(2500.0)
    assert live.as_json()["compute_ms_per_1000"] == 2500.0
    # and the same once the minute is in PostgreSQL
    assert rollup.roll_up_minutes(now) == 1
    assert queries.summary("5m", model=MODEL, version="1", now=now).compute_ms_per_1000 == pytest.approx(2500.0)


def test_the_model_page_shows_a_variant_next_to_its_parent(
    client: Client, viewer: Any, register: Callable[..., Any], inject: Callable[..., Any], redis_client: redis.Redis
) -> None:
    register(MODEL)
    inject([*computed("1", 8.0, 1, 50), *computed("2", 2.0, 1, 50)], dt.datetime.now(dt.UTC))
    client.force_login(viewer)

    page = client.get(f"/dashboard/models/{MODEL}/?window=5m").content.decode()

    assert "Compute per 1,000 requests" in page
    assert '<td class="num">8,000.0 ms</td>' in page  # v1
    assert '<td class="num">2,000.0 ms</td>' in page  # v2: a quarter of the worker time
