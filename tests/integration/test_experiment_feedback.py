"""A/B experiments through the gateway: feedback joined to the arm that answered,
the live report, and stopping the experiment while promoting its winner in one
action. A real worker serves both arms.

Feedback: `POST /v2/models/{name}/feedback {"id": <x-request-id or the request's
own id>, "reward": number | bool}`; each request takes one feedback, for 7 days.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry import services as registry_services
from rollouts import services
from rollouts.analysis import rewards
from rollouts.models import Arm, RolloutStatus
from rollouts.statistics import Moments
from tests.integration.rollouts import forget_figures, keyed, run, wait_for_routing
from tests.support.asgi import AsgiResponse
from tests.support.rollout_models import body, champion_model
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

MODEL = "inf-exp"


def feedback(gateway: Gateway, payload: Any, model: str = MODEL, method: str = "POST") -> AsgiResponse:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return gateway.client.request(method, f"/v2/models/{model}/feedback", raw, {"content-type": "application/json"})


def wait_joinable(gateway: Gateway, redis_conn: redis.Redis, *request_ids: str, model: str = MODEL) -> None:
    """Until the gateway has recorded which arm served these requests (it does so after answering,
    on its own loop, which runs only while a call drives it)."""
    keys = [f"{settings.TURNOUT['REDIS_PREFIX']}:fbmap:{model}:{request_id}" for request_id in request_ids]

    async def poll() -> None:
        deadline = asyncio.get_running_loop().time() + 3
        while redis_conn.exists(*keys) < len(keys):
            assert asyncio.get_running_loop().time() < deadline, "the arms of the requests were not recorded"
            await asyncio.sleep(0.01)

    run(gateway, poll())


@pytest.fixture
def experiment(registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis) -> Any:
    forget_figures(redis_conn, MODEL)
    control = registry.add(MODEL, champion_model(0))
    treatment = registry.add(MODEL, champion_model(1), production=False)
    for version in (control, treatment):
        gateway.wait_loaded(MODEL, version.number, worker)
    rollout = services.start_experiment(
        control.model,
        [("control", control, 50), ("treatment", treatment, 50)],
        actor=registry.owner,
        minimum_effect=0.02,
    )
    wait_for_routing(gateway, MODEL, lambda routing: routing is not None)
    return rollout


def test_bad_feedback_bodies_are_refused_with_400(experiment: Any, gateway: Gateway) -> None:
    for payload, phrase in [
        (b"{not json", "not valid JSON"),
        ([1, 2], "must be an object"),
        ({"reward": 1}, "needs the 'id'"),
        ({"id": "", "reward": 1}, "needs the 'id'"),
        ({"id": 17, "reward": 1}, "needs the 'id'"),
        ({"id": "abc"}, "'reward' must be a finite number"),
        ({"id": "abc", "reward": "yes"}, "'reward' must be a finite number"),
        ({"id": "abc", "reward": None}, "'reward' must be a finite number"),
    ]:
        answer = feedback(gateway, payload)
        assert (answer.status, phrase in answer.json()["error"]) == (400, True), (payload, answer.body)
    assert rewards(experiment) == {"control": Moments(0, 0.0, 0.0), "treatment": Moments(0, 0.0, 0.0)}


def test_feedback_on_the_wrong_method_path_or_model_is_refused(experiment: Any, gateway: Gateway) -> None:
    assert feedback(gateway, {"id": "x", "reward": 1}, method="GET").status == 405
    versioned = gateway.client.post(f"/v2/models/{MODEL}/versions/1/feedback", b"{}")
    assert versioned.status == 404
    assert "feedback goes to" in versioned.json()["error"]
    assert feedback(gateway, {"id": "x", "reward": 1}, model="inf-nobody").status == 404


def test_feedback_is_counted_on_the_arm_that_answered_once(
    experiment: Any, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    # Given a request served during the experiment, named by its X-Request-ID
    answer = gateway.infer(MODEL, body(), headers=keyed("alice", **{"x-request-id": "req-alice-1"}))
    assert answer.status == 200
    arm = answer.headers["x-turnout-arm"]
    wait_joinable(gateway, redis_conn, "req-alice-1")

    # When its outcome is reported
    first = feedback(gateway, {"id": "req-alice-1", "reward": True})

    # Then it counts once, on that arm
    assert first.status == 200, first.body
    assert first.json() == {"id": "req-alice-1", "arm": arm, "rollout": experiment.pk, "recorded": True}
    assert rewards(experiment)[arm] == Moments(1, 1.0, 1.0)
    # a second report for the same request finds nothing to join (the join is used up): 404
    again = feedback(gateway, {"id": "req-alice-1", "reward": True})
    assert again.status == 404
    assert "once" in again.json()["error"]
    assert rewards(experiment)[arm] == Moments(1, 1.0, 1.0)
    # an id the gateway never served: 404
    unknown = feedback(gateway, {"id": "never-sent", "reward": 1})
    assert unknown.status == 404
    assert "never-sent" in unknown.json()["error"]


def test_the_requests_own_id_joins_too(experiment: Any, gateway: Gateway, redis_conn: redis.Redis) -> None:
    answer = gateway.infer(MODEL, body(request_id="order-17"), headers=keyed("bob"))
    assert answer.status == 200
    assert answer.json()["id"] == "order-17"
    arm = answer.headers["x-turnout-arm"]
    wait_joinable(gateway, redis_conn, "order-17")

    # (A binary experiment: numeric rewards are in tests/integration/test_feedback_integrity.py.)
    assert feedback(gateway, {"id": "order-17", "reward": 1}).status == 200
    assert rewards(experiment)[arm] == Moments(1, 1.0, 1.0)


def test_feedback_outside_a_rollout_is_not_joined(registry: Registry, worker: Workers, gateway: Gateway) -> None:
    version = registry.add("inf-plain", champion_model(0))
    gateway.wait_loaded("inf-plain", version.number, worker)
    answer = gateway.infer("inf-plain", body(), headers={"x-request-id": "plain-1"})
    assert answer.status == 200
    assert answer.headers["x-turnout-arm"] == "champion"
    run(gateway, asyncio.sleep(0.2))
    assert feedback(gateway, {"id": "plain-1", "reward": 1}, model="inf-plain").status == 404


def test_stopping_the_experiment_and_promoting_its_winner_is_one_action(
    experiment: Any, registry: Registry, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    # Given feedback where the treatment converts far better
    async def traffic() -> list[AsgiResponse]:
        return list(
            await asyncio.gather(
                *(
                    gateway.ainfer(MODEL, body(), headers=keyed(f"user-{i}", **{"x-request-id": f"r{i}"}))
                    for i in range(120)
                )
            )
        )

    answers = run(gateway, traffic())
    assert all(a.status == 200 for a in answers)
    wait_joinable(gateway, redis_conn, *(f"r{i}" for i in range(120)))
    for i, answer in enumerate(answers):
        converted = answer.headers["x-turnout-arm"] == "treatment" or i % 10 == 0
        assert feedback(gateway, {"id": f"r{i}", "reward": converted}).status == 200
    live = rewards(experiment)
    assert live["control"].n + live["treatment"].n == 120
    run(gateway, gateway.app.recorder.flush())
    api = APIClient()
    api.force_login(registry.owner)

    # The live report shows the rewards, their intervals and the comparison
    report = api.get(f"/api/rollouts/{experiment.pk}/").json()["report"]
    arms = {arm["name"]: arm for arm in report["arms"]}
    assert arms["treatment"]["reward"]["n"] == live["treatment"].n
    assert arms["treatment"]["reward"]["mean"] == pytest.approx(1.0)
    assert arms["control"]["reward"]["mean"] == pytest.approx(live["control"].mean, abs=1e-6)
    comparison = arms["treatment"]["comparison"]
    assert comparison["difference"] > 0.5
    assert comparison["p_value"] < 0.05
    assert comparison["significant"]
    assert arms["control"]["comparison"] is None
    served = Counter(answer.headers["x-turnout-arm"] for answer in answers)
    assert {name: arm["figures"]["requests"] for name, arm in arms.items()} == served

    page = api.get(f"/rollouts/{experiment.pk}/").content.decode()
    assert "Mean conversion (95 % CI)" in page
    assert "<strong>significant</strong>" in page

    # When the owner stops it, promoting the treatment
    answer = api.post(f"/api/rollouts/{experiment.pk}/promote/", {"arm": "treatment"}, format="json")

    # Then production is the treatment, the experiment ended, and its rewards stay on its arms
    assert answer.status_code == 200, answer.content
    experiment.refresh_from_db()
    treatment_version = experiment.arms.get(name="treatment").version
    assert experiment.status == RolloutStatus.PROMOTED
    assert experiment.outcome["winner"] == "treatment"
    assert registry_services.serving_version(experiment.model) == treatment_version
    assert services.routing_for(experiment.model) is None
    for name, moments in live.items():
        row = Arm.objects.get(rollout=experiment, name=name)
        assert (row.reward_n, row.reward_sum, row.reward_sum_sq) == (moments.n, moments.total, moments.total_sq)
    assert rewards(experiment) == live  # read from the rows now
    promoted = AuditEntry.objects.get(action="rollout.promoted", object_id=str(experiment.pk))
    assert promoted.actor_name == registry.owner.get_username()
    wait_for_routing(gateway, MODEL, lambda routing: routing is None)
    after = gateway.infer(MODEL, body(), headers=keyed("user-1"))
    assert (after.headers["x-turnout-arm"], after.headers["x-turnout-model-version"]) == (
        "champion",
        str(treatment_version.number),
    )
