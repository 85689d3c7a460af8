"""The gateway routes by the sticky split: each routing key reaches the same arm, and that
arm's version, every time (a real worker serves both arms)."""

from __future__ import annotations

import asyncio

import pytest

from rollouts import services
from rollouts.splitting import bounds, choose
from tests.integration.rollouts import keyed, run, wait_for_routing
from tests.support.asgi import AsgiResponse
from tests.support.rollout_models import body, champion_model
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_the_gateway_sends_each_routing_key_to_the_same_arm_every_time(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    # Given an experiment pinned by a custom header, both arms served
    a = registry.add("inf-sticky", champion_model(0))
    b = registry.add("inf-sticky", champion_model(1), production=False)
    for version in (a, b):
        gateway.wait_loaded("inf-sticky", version.number, worker)
    rollout = services.start_experiment(
        a.model, [("a", a, 50), ("b", b, 50)], actor=registry.owner, routing_header="X-User-Id"
    )
    wait_for_routing(gateway, "inf-sticky", lambda routing: routing is not None)
    edges = bounds([50, 50])

    # When 40 clients send 5 requests each, all at once
    clients = [f"customer-{i}" for i in range(40)]
    requests = [(client, attempt) for attempt in range(5) for client in clients]

    async def send() -> list[tuple[str, AsgiResponse]]:
        answers = await asyncio.gather(
            *(gateway.ainfer("inf-sticky", body(), headers=keyed(c, "x-user-id")) for c, _ in requests)
        )
        return [(c, answer) for (c, _), answer in zip(requests, answers, strict=True)]

    answers = run(gateway, send())

    # Then every client got one arm, the one its key hashes to, and that arm's version
    seen: dict[str, set[tuple[str, str]]] = {}
    for client, answer in answers:
        assert answer.status == 200, answer.body
        arm = answer.headers["x-turnout-arm"]
        assert answer.json()["parameters"]["arm"] == arm
        seen.setdefault(client, set()).add((arm, answer.headers["x-turnout-model-version"]))
    versions = {"a": str(a.number), "b": str(b.number)}
    for client, arms in seen.items():
        expected = ["a", "b"][choose(rollout.pk, client, edges)]
        assert arms == {(expected, versions[expected])}, client
    assert {arm for arms in seen.values() for arm, _ in arms} == {"a", "b"}
