"""Feedback cannot be forged or corrupt an experiment's sums.

- Only the API key that made a request may give its feedback; another key, even
  one with `infer` on the same model, gets the 404 of a request that awaits none.
- Rewards are validated before anything is counted: a binary (conversion)
  metric takes 0/1 or false/true, a numeric one a finite number within
  +-TURNOUT_FEEDBACK_MAX_ABS_REWARD. A refused reward leaves the join in place.
- The join is used and the sums updated in one Redis script: never half.

A real worker serves both arms; the gateway requires keys, as in production.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis
from django.conf import settings

from accounts import services as keys
from rollouts import services
from rollouts.analysis import rewards
from rollouts.statistics import Moments
from tests.integration.rollouts import forget_figures, run, wait_for_routing
from tests.support.asgi import AsgiClient, AsgiResponse
from tests.support.rollout_models import body, champion_model
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


MODEL = "inf-fb-integrity"
NOTHING = Moments(0, 0.0, 0.0)


@pytest.fixture
def gateway(keyed_gateway_client: AsgiClient) -> Gateway:
    return Gateway(keyed_gateway_client, keyed_gateway_client.gateway)  # type: ignore[attr-defined]


@pytest.fixture
def alice(viewer: Any) -> str:
    """The secret of the key that makes the requests."""
    return keys.create_key(viewer, name="alice", model_patterns=["inf-*"], actions=["infer"], future_models=True)[1]


@pytest.fixture
def mallory(django_user_model: Any) -> str:
    """Another user's key, allowed to infer on the same models."""
    user = django_user_model.objects.create_user("mal", "mal@example.com", "correct horse battery")
    return keys.create_key(user, name="mallory", model_patterns=["*"], actions=["infer"])[1]


def start(registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis, metric: str) -> Any:
    forget_figures(redis_conn, MODEL)
    control = registry.add(MODEL, champion_model(0))
    treatment = registry.add(MODEL, champion_model(1), production=False)
    for version in (control, treatment):
        wait_loaded(gateway, version.number, worker)
    rollout = services.start_experiment(
        control.model, [("control", control, 50), ("treatment", treatment, 50)], actor=registry.owner, metric=metric
    )
    wait_for_routing(gateway, MODEL, lambda routing: routing is not None)
    return rollout


def wait_loaded(gateway: Gateway, number: int, worker: Workers) -> None:
    # The keyed gateway needs a key for /ready: check through an unkeyed view of the same registry.
    async def poll() -> None:
        entry = await gateway.app.catalog.get(MODEL)
        assert entry is not None

    run(gateway, poll())
    gateway.app.models.require_key = False
    try:
        gateway.wait_loaded(MODEL, number, worker)
    finally:
        gateway.app.models.require_key = True


@pytest.fixture
def binary(registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis) -> Any:
    return start(registry, worker, gateway, redis_conn, "binary")


@pytest.fixture
def numeric(registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis) -> Any:
    return start(registry, worker, gateway, redis_conn, "numeric")


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def served(gateway: Gateway, redis_conn: redis.Redis, secret: str, request_id: str) -> str:
    """Infer as `secret`'s holder; the arm that answered, once its feedback can be joined."""
    answer = gateway.infer(MODEL, body(), headers={**bearer(secret), "x-request-id": request_id})
    assert answer.status == 200, answer.body
    join = f"{settings.TURNOUT['REDIS_PREFIX']}:fbmap:{MODEL}:{request_id}"

    async def joinable() -> None:
        for _ in range(300):
            if redis_conn.exists(join):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the arm of the request was not recorded")

    run(gateway, joinable())
    return str(answer.headers["x-turnout-arm"])


async def afeedback(gateway: Gateway, secret: str, payload: Any) -> AsgiResponse:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = {**bearer(secret), "content-type": "application/json"}
    return await gateway.client.arequest("POST", f"/v2/models/{MODEL}/feedback", raw, headers)


def feedback(gateway: Gateway, secret: str, payload: Any) -> AsgiResponse:
    return run(gateway, afeedback(gateway, secret, payload))


def test_another_key_cannot_give_a_requests_feedback(
    binary: Any, gateway: Gateway, redis_conn: redis.Redis, alice: str, mallory: str
) -> None:
    arm = served(gateway, redis_conn, alice, "alice-1")

    forged = feedback(gateway, mallory, {"id": "alice-1", "reward": True})

    assert forged.status == 404
    assert "no request 'alice-1'" in forged.json()["error"]
    assert rewards(binary) == {"control": NOTHING, "treatment": NOTHING}
    # The join is still there for its owner.
    own = feedback(gateway, alice, {"id": "alice-1", "reward": True})
    assert own.status == 200, own.body
    assert rewards(binary)[arm] == Moments(1, 1.0, 1.0)


def test_a_binary_metric_takes_only_0_or_1_and_a_refusal_keeps_the_join(
    binary: Any, gateway: Gateway, redis_conn: redis.Redis, alice: str
) -> None:
    arm = served(gateway, redis_conn, alice, "alice-2")

    answers = [feedback(gateway, alice, {"id": "alice-2", "reward": r}) for r in (2.5, -1, 0.5, 1e200, -1e308)]

    assert [a.status for a in answers] == [400] * 5, [a.body for a in answers]
    assert all("0 or 1" in a.json()["error"] for a in answers)
    assert rewards(binary) == {"control": NOTHING, "treatment": NOTHING}
    assert feedback(gateway, alice, {"id": "alice-2", "reward": 0}).status == 200
    assert rewards(binary)[arm] == Moments(1, 0.0, 0.0)


def test_a_numeric_metric_takes_finite_rewards_within_the_configured_range(
    numeric: Any, gateway: Gateway, redis_conn: redis.Redis, alice: str
) -> None:
    limit = settings.TURNOUT["FEEDBACK_MAX_ABS_REWARD"]
    arm = served(gateway, redis_conn, alice, "alice-3")

    huge = feedback(gateway, alice, {"id": "alice-3", "reward": 1e200})
    negative = feedback(gateway, alice, {"id": "alice-3", "reward": -limit * 2})
    infinite = feedback(gateway, alice, b'{"id": "alice-3", "reward": 1e400}')

    assert (huge.status, negative.status, infinite.status) == (400, 400, 400), (huge.body, infinite.body)
    assert "within" in huge.json()["error"]
    assert rewards(numeric) == {"control": NOTHING, "treatment": NOTHING}
    assert feedback(gateway, alice, {"id": "alice-3", "reward": 2.5}).status == 200
    assert rewards(numeric)[arm] == Moments(1, 2.5, 6.25)


def test_concurrent_feedbacks_for_one_request_count_once(
    numeric: Any, gateway: Gateway, redis_conn: redis.Redis, alice: str
) -> None:
    arm = served(gateway, redis_conn, alice, "alice-4")

    async def together() -> list[AsgiResponse]:
        return list(
            await asyncio.gather(*(afeedback(gateway, alice, {"id": "alice-4", "reward": 3}) for _ in range(20)))
        )

    statuses = sorted(answer.status for answer in run(gateway, together()))

    assert statuses.count(200) == 1
    assert set(statuses) <= {200, 404, 409}
    assert rewards(numeric)[arm] == Moments(1, 3.0, 9.0)
