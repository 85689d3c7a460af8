"""Sticky traffic splitting: the share of routing keys each arm gets follows the
weights, a key keeps its arm, and the gateway routes by it (a real worker
serves both arms)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from rollouts import services
from rollouts.splitting import SLOTS, bounds, choose, mirrored
from tests.rollouts.conftest import keyed, run, wait_for_routing
from tests.support.asgi import AsgiResponse
from tests.support.rollout_models import body, champion_model
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

KEYS = [f"user-{i}" for i in range(10_000)]


@pytest.mark.parametrize("weights", [[50, 50], [20, 30, 50], [5, 95], [1, 1, 1, 1]])
def test_over_10000_keys_each_arm_gets_its_weight_within_2_points(weights: list[float]) -> None:
    edges = bounds(weights)
    counts = Counter(choose(42, key, edges) for key in KEYS)
    for index, weight in enumerate(weights):
        share = counts[index] / len(KEYS)
        assert share == pytest.approx(weight / sum(weights), abs=0.02), (index, share)


def test_a_key_keeps_its_arm_and_rollouts_shuffle_keys_independently() -> None:
    edges = bounds([50, 50])
    first = [choose(1, key, edges) for key in KEYS]
    assert first == [choose(1, key, edges) for key in KEYS]  # the same arm every time
    second = [choose(2, key, edges) for key in KEYS]
    both = sum(1 for a, b in zip(first, second, strict=True) if a == b == 0) / len(KEYS)
    assert both == pytest.approx(0.25, abs=0.02)  # independent halves, not the same half


def test_the_mirrored_fraction_follows_its_setting_and_sticks() -> None:
    for fraction in (0.1, 0.5, 1.0):
        share = sum(mirrored(7, key, fraction) for key in KEYS) / len(KEYS)
        assert share == pytest.approx(fraction, abs=0.02)
    assert [mirrored(7, key, 0.3) for key in KEYS[:100]] == [mirrored(7, key, 0.3) for key in KEYS[:100]]


def test_weights_are_checked() -> None:
    assert bounds([0, 100]) == [0, SLOTS]
    assert {choose(3, key, bounds([0, 100])) for key in KEYS[:500]} == {1}
    with pytest.raises(ValueError, match="more than 0"):
        bounds([0, 0])
    with pytest.raises(ValueError, match="negative"):
        bounds([-1, 2])


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
