"""Shadow traffic: the champion answers, a copy goes to the shadow afterwards.

Clients receive byte-identical answers with and without a shadow, and the
shadow's latency, errors and agreement with the champion are recorded (in the
gateway's per-minute hash for the `shadow` arm). The latency cost of a shadow
is a speed target, measured by bench/shadow_overhead.py, not here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from rollouts import services
from rollouts.models import RolloutStatus
from tests.integration.rollouts import keyed, run, wait_for_routing
from tests.support.asgi import AsgiResponse
from tests.support.rollout_models import body, champion_model, fails_on_large_first_feature
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

REQUESTS = 30


def send_one_by_one(gateway: Gateway, model: str, first: float = 1.0) -> list[AsgiResponse]:
    # One at a time: every request runs alone (batch size 1), so its bytes do not depend on what it was batched with.
    return [
        gateway.infer(model, body(first + i / 10, request_id=f"q{i}"), headers=keyed(f"client-{i}"))
        for i in range(REQUESTS)
    ]


def shadow_counts(gateway: Gateway, redis_conn: redis.Redis, model: str, version: int, requests: int) -> dict[str, int]:
    """The shadow's recorded fields, summed over minutes, once `requests` copies are in (the copies run on
    the gateway's loop after each answer; the recorder flushes from it)."""
    pattern = f"{settings.TURNOUT['REDIS_PREFIX']}:obs:*:{model}:{version}:shadow"

    def read() -> dict[str, int]:
        totals: dict[str, int] = {}
        for key in redis_conn.scan_iter(match=pattern):
            for field, value in redis_conn.hgetall(key).items():
                totals[field.decode()] = totals.get(field.decode(), 0) + int(value)
        return totals

    async def settle() -> dict[str, int]:
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            await gateway.app.recorder.flush()
            totals = read()
            if totals.get("n", 0) >= requests and totals.get("sr", 0) + totals.get("c:400", 0) >= requests:
                return totals
            assert asyncio.get_running_loop().time() < deadline, f"shadow copies recorded so far: {totals}"
            await asyncio.sleep(0.05)

    return run(gateway, settle())


def start_shadow(registry: Registry, worker: Workers, gateway: Gateway, model: str, shadow_bytes: bytes) -> Any:
    champion = registry.add(model, champion_model(0))
    shadow = registry.add(model, shadow_bytes, production=False)
    for version in (champion, shadow):
        gateway.wait_loaded(model, version.number, worker)
    return champion, shadow


def test_clients_get_byte_identical_answers_with_and_without_a_shadow(
    registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    # Given the answers to some requests without a shadow
    champion, shadow = start_shadow(registry, worker, gateway, "inf-shadow", champion_model(1))
    without = send_one_by_one(gateway, "inf-shadow")

    # When a shadow of another version mirrors all the traffic and the same requests come again
    rollout = services.start_shadow(champion.model, shadow, actor=registry.owner, fraction=1.0)
    wait_for_routing(gateway, "inf-shadow", lambda routing: routing is not None and routing.shadow is not None)
    with_shadow = send_one_by_one(gateway, "inf-shadow")

    # Then every answer is the same, byte for byte, and comes from the champion
    for before, after in zip(without, with_shadow, strict=True):
        assert (before.status, after.status) == (200, 200)
        assert after.body == before.body
        assert after.json()["parameters"]["arm"] == before.json()["parameters"]["arm"] == "champion"
        assert after.headers["x-turnout-arm"] == before.headers["x-turnout-arm"] == "champion"
        assert after.headers["x-turnout-model-version"] == str(champion.number)

    # And the shadow's latency, status codes and agreement were recorded, one copy per request
    counts = shadow_counts(gateway, redis_conn, "inf-shadow", shadow.number, REQUESTS)
    assert counts["n"] == counts["c:200"] == REQUESTS
    assert sum(v for k, v in counts.items() if k.startswith("l:")) == REQUESTS  # latency histogram
    assert counts["sr"] == counts["sdn"] == REQUESTS  # one row compared per answer
    assert 0 <= counts.get("sa", 0) <= REQUESTS
    assert counts["sdu"] > 0  # other weights, other scores
    # Copies held together reached the shadow's worker as multi-row requests.
    assert any(int(k[2:]) > 1 for k in counts if k.startswith("b:")), counts

    # and the rollout's report shows them
    api = APIClient()
    api.force_login(registry.owner)
    report = api.get(f"/api/rollouts/{rollout.pk}/").json()["report"]
    agreement = report["agreement"]
    assert agreement["copies"] == REQUESTS
    assert agreement["agreement"] == pytest.approx(counts.get("sa", 0) / counts["sr"], abs=1e-5)
    assert agreement["mean_max_difference"] == pytest.approx(counts["sdu"] / counts["sdn"] / 1e6, abs=1e-6)
    page = api.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "Agreement with production" in page
    assert f"{REQUESTS} requests copied to the shadow" in page
    arms = {arm["name"]: arm["figures"]["requests"] for arm in report["arms"]}
    assert arms["shadow"] == REQUESTS
    # (figures are kept per minute: the champion's include the requests of the minute the shadow began in)
    assert REQUESTS <= arms["champion"] <= 2 * REQUESTS


def test_a_failing_shadow_is_recorded_and_never_seen_by_clients(
    registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    # Given a shadow that cannot run inputs whose first value is 10 or more
    champion, shadow = start_shadow(registry, worker, gateway, "inf-shadow-bad", fails_on_large_first_feature())
    rollout = services.start_shadow(champion.model, shadow, actor=registry.owner)
    wait_for_routing(gateway, "inf-shadow-bad", lambda routing: routing is not None)

    # When such inputs come
    answers = send_one_by_one(gateway, "inf-shadow-bad", first=50.0)

    # Then clients got the champion's answers, and the shadow's refusals were recorded
    assert {(a.status, a.headers["x-turnout-arm"]) for a in answers} == {(200, "champion")}
    counts = shadow_counts(gateway, redis_conn, "inf-shadow-bad", shadow.number, REQUESTS)
    assert counts["n"] == counts["c:400"] == REQUESTS
    assert counts.get("sr", 0) == 0  # nothing to compare

    # and stopping the shadow leaves production as it was
    api = APIClient()
    api.force_login(registry.owner)
    assert api.post(f"/api/rollouts/{rollout.pk}/stop/").status_code == 200
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.STOPPED
    assert services.routing_for(champion.model) is None


def test_copies_sent_together_keep_their_own_outcomes(
    registry: Registry, worker: Workers, gateway: Gateway, redis_conn: redis.Redis
) -> None:
    # Given a shadow that refuses inputs whose first value is 10 or more, mirroring everything
    champion, shadow = start_shadow(registry, worker, gateway, "inf-shadow-mixed", fails_on_large_first_feature())
    services.start_shadow(champion.model, shadow, actor=registry.owner, fraction=1.0)
    wait_for_routing(gateway, "inf-shadow-mixed", lambda routing: routing is not None)

    # When good and bad inputs come one after the other, held and sent together
    answers = [
        gateway.infer("inf-shadow-mixed", body(50.0 if i % 3 == 0 else 1.0, request_id=f"m{i}"))
        for i in range(REQUESTS)
    ]

    # Then the clients got the champion's answers, and every copy has its own outcome
    assert {a.status for a in answers} == {200}
    bad = len(range(0, REQUESTS, 3))
    counts = shadow_counts(gateway, redis_conn, "inf-shadow-mixed", shadow.number, REQUESTS)
    assert (counts["c:200"], counts["c:400"]) == (REQUESTS - bad, bad)
    assert counts["sr"] == REQUESTS - bad
