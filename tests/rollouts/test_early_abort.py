"""A canary is rolled back before its step's min_requests once its error rate is far above the
champion's (the early-abort gate), and never by the noise of a healthy one; a gate still
waiting for requests says so instead of failing. Figures are fed as the gateway records them
(`inject`), and the analysis reads them as beat does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import redis

from registry import services
from registry.demo_models import build_mlp
from registry.models import RegisteredModel
from rollouts import services as rollouts
from rollouts.analysis import analyze_canary, apply
from rollouts.models import RolloutStatus
from tests.support.figures import MODEL, observations

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def canary(register: Callable[..., Any], owner: Any, redis_client: redis.Redis) -> Any:
    """iris v1 in production, a canary of v2 at its first step with the default gates (min_requests 100)."""
    first = register(MODEL)
    second = register(MODEL, onnx_bytes=build_mlp(4, [8], 3, seed=1))
    model = RegisteredModel.objects.get(name=MODEL)
    services.set_alias(model, services.PRODUCTION, first, actor=owner)
    return rollouts.start_canary(model, second, actor=owner)


def gate(analysis: Any, name: str) -> Any:
    return next(g for g in analysis.gates if g.name == name)


def test_a_canary_failing_every_one_of_20_requests_is_rolled_back_at_once(
    inject: Callable[..., Any], canary: Any
) -> None:
    now = canary.started_at + 2 * MINUTE
    inject(observations(400, seed=1, error_share=0.01), now - MINUTE)
    inject(observations(20, version="2", arm="canary", seed=2, error_share=1.0), now - MINUTE)

    analysis = analyze_canary(canary, now)
    ended = apply(canary, analysis)

    assert gate(analysis, "min_requests").passed is None  # 20 of 100: waiting, not failed
    assert gate(analysis, "early_abort").passed is False
    assert analysis.action == "rollback"
    assert ended.status == RolloutStatus.ROLLED_BACK
    assert ended.outcome["gate"] == "early_abort"
    assert services.serving_version(canary.model).number == 1


def test_a_canary_failing_every_one_of_19_requests_is_not_judged_yet(inject: Callable[..., Any], canary: Any) -> None:
    now = canary.started_at + 2 * MINUTE
    inject(observations(400, seed=1), now - MINUTE)
    inject(observations(19, version="2", arm="canary", seed=2, error_share=1.0), now - MINUTE)

    analysis = analyze_canary(canary, now)

    assert gate(analysis, "early_abort").passed is None
    assert analysis.action == "wait"


def test_a_healthy_canary_with_a_few_unlucky_errors_is_not_aborted_early(
    inject: Callable[..., Any], canary: Any
) -> None:
    # 3 failures in its first 30 requests (10 %) against 2 % for the champion: suspicious, not proof.
    now = canary.started_at + 2 * MINUTE
    inject(observations(500, seed=1, error_share=0.02), now - MINUTE)
    healthy = observations(27, version="2", arm="canary", seed=3)
    failing = observations(3, version="2", arm="canary", seed=4, error_share=1.0)
    inject(healthy + failing, now - MINUTE)

    analysis = analyze_canary(canary, now)
    kept = apply(canary, analysis)

    assert gate(analysis, "early_abort").passed is None
    assert gate(analysis, "error_rate_increase").passed is None  # judged only from min_requests
    assert analysis.action == "wait"
    assert kept.status == RolloutStatus.RUNNING


def test_gates_waiting_for_requests_are_waiting_and_the_page_says_so(
    inject: Callable[..., Any], canary: Any, client: Any, owner: Any
) -> None:
    now = canary.started_at + 2 * MINUTE
    inject(observations(50, seed=1), now - MINUTE)
    inject(observations(10, version="2", arm="canary", seed=2), now - MINUTE)
    client.force_login(owner)

    page = client.get(f"/rollouts/{canary.pk}/").content.decode()

    assert not any(g.passed is False for g in analyze_canary(canary).gates)
    assert '<span class="waiting">waiting</span>' in page
    assert 'class="bad">failed' not in page


def test_the_arms_table_shows_the_figures_the_gates_judge(
    inject: Callable[..., Any], canary: Any, client: Any, owner: Any
) -> None:
    # The champion's requests before the canary's step began count for it, not for the canary.
    now = canary.started_at + 2 * MINUTE
    inject(observations(120, seed=1), now - MINUTE)
    inject(observations(40, version="2", arm="canary", seed=2), now - MINUTE)
    client.force_login(owner)

    report = client.get(f"/api/rollouts/{canary.pk}/").json()["report"]

    arms = {arm["name"]: arm["figures"] for arm in report["arms"]}
    gates = {g["name"]: g for g in report["analysis"]["gates"]}
    assert report["window"] == "gates"
    assert arms == {name: report["analysis"]["figures"][name] for name in ("champion", "canary")}
    assert gates["min_requests"]["value"] == arms["canary"]["requests"]
