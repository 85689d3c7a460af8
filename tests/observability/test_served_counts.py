"""Cache hits and fallback answers in the per-minute figures: counted per series, kept out of the
queue and compute figures (the version did not run them), carried through the rollup into
PostgreSQL, and judged by the canary gate as the failures they stand for."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import redis

from observability import queries, rollup
from observability.models import MinuteStats
from observability.recorder import Observation
from registry import services
from registry.demo_models import build_mlp
from registry.models import RegisteredModel
from rollouts import services as rollouts
from rollouts.analysis import analyze_canary
from tests.support.figures import MODEL, observations

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)


def fallen_back(items: list[Observation], kind: str = "version", reason: str = "model_error") -> list[Observation]:
    return [dataclasses.replace(o, code=200, fallback=kind, fallback_reason=reason) for o in items]


def test_fallback_answers_and_cache_hits_are_counted_but_not_as_computed(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    computed = observations(40, seed=1)
    rescued = fallen_back(observations(10, seed=2))
    reviewed = fallen_back(observations(5, seed=3), "human_review", "timeout")
    hits = [dataclasses.replace(o, code=200, cache="hit", queue_ms=0.0, compute_ms=0.0) for o in observations(25)]
    misses = [dataclasses.replace(o, cache="miss") for o in computed[:20]]
    inject([*computed[20:], *misses, *rescued, *reviewed, *hits], now - 3 * MINUTE)

    live = queries.summary("5m", model=MODEL, now=now)

    assert live.requests == 80
    assert live.error_rate == 0.0
    assert live.fallbacks == {"human_review": 5, "version": 10}
    assert live.fallback_reasons == {"model_error": 10, "timeout": 5}
    assert live.fallback_rate == pytest.approx(15 / 80)
    assert live.failure_rate == pytest.approx(15 / 80)
    assert live.cache_hits == 25
    assert live.cache_hit_ratio == pytest.approx(25 / 45)
    # only the 40 requests the version ran make its queue and compute means
    assert live.mean_compute_ms == pytest.approx(sum(o.compute_ms for o in computed) / 40, rel=1e-3)
    assert sum(live.batch_sizes.values()) == 40

    # and the same figures come back once the minute is in PostgreSQL
    assert rollup.roll_up_minutes(now) == 1
    row = MinuteStats.objects.get()
    assert row.served == {
        "fb:human_review": 5,
        "fb:version": 10,
        "fr:model_error": 10,
        "fr:timeout": 5,
        "hit": 25,
        "miss": 20,
    }
    assert queries.summary("5m", model=MODEL, now=now) == live


@pytest.fixture
def canary(register: Callable[..., Any], owner: Any) -> Any:
    """iris v1 in production, a canary of v2 at its first step, gates at their defaults but 10 requests."""
    first = register(MODEL)
    second = register(
        MODEL, onnx_bytes=build_mlp(4, [8], 3, seed=1)
    )  # `register` points production at each new version: back to v1
    model = RegisteredModel.objects.get(name=MODEL)
    services.set_alias(model, services.PRODUCTION, first, actor=owner)
    return rollouts.start_canary(model, second, actor=owner, config={"gates": {"min_requests": 10}})


def test_a_canary_that_only_succeeds_through_fallbacks_is_rolled_back(
    inject: Callable[..., Any], redis_client: redis.Redis, canary: Any
) -> None:
    now = canary.started_at + 2 * MINUTE
    inject(observations(50, seed=1), now - MINUTE)
    inject(fallen_back(observations(30, version="2", arm="canary", seed=2)), now - MINUTE)

    analysis = analyze_canary(canary, now)

    assert analysis.action == "rollback"
    gate = next(g for g in analysis.gates if g.name == "error_rate_increase")
    assert gate.passed is False
    assert gate.value == pytest.approx(1.0)
    # though its clients saw no error at all
    assert analysis.figures["canary"]["error_rate"] == 0.0
    assert analysis.figures["canary"]["fallback_rate"] == 1.0


def test_a_canary_that_answers_for_itself_passes_the_same_gate(
    inject: Callable[..., Any], redis_client: redis.Redis, canary: Any
) -> None:
    now = canary.started_at + 2 * MINUTE
    inject(observations(50, seed=1), now - MINUTE)
    inject(observations(50, version="2", arm="canary", seed=1), now - MINUTE)  # the same latencies

    analysis = analyze_canary(canary, now)

    gate = next(g for g in analysis.gates if g.name == "error_rate_increase")
    assert gate.passed is True
    assert gate.value == 0.0
    assert analysis.action != "rollback"
