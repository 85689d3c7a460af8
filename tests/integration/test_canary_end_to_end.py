"""Canaries end to end: a real worker serves both versions, traffic goes through the
in-process gateway with many distinct routing keys, and the analysis beat runs
(`run_due_analyses`, in a thread, while requests are in flight) until the
canary is promoted or rolled back.

In each case the `production` alias, the gateway's routing and the audit log end
in the right state, and no request fails because of a switch: every answer is a
200, except the canary's own refusals of inputs it cannot run.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEntry
from registry import services as registry_services
from rollouts import services
from rollouts.models import RolloutStatus
from tests.integration.rollouts import FAST_STEPS, audit_actions, drive, wait_for_routing
from tests.support.rollout_models import champion_model, fails_on_large_first_feature, much_slower
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.timeout(180)]


def start(registry: Registry, gateway: Gateway, worker: Workers, name: str, canary_bytes: bytes, **gates: Any) -> Any:
    champion = registry.add(name, champion_model())
    canary = registry.add(name, canary_bytes, production=False)
    for version in (champion, canary):
        gateway.wait_loaded(name, version.number, worker)
    config = {**FAST_STEPS, "gates": {"min_requests": 20, **gates}}
    rollout = services.start_canary(champion.model, canary, actor=registry.owner, config=config)
    wait_for_routing(gateway, name, lambda routing: routing is not None and routing.rollout_id == rollout.pk)
    return champion, canary, rollout


def test_a_canary_whose_version_fails_on_part_of_its_inputs_is_rolled_back_by_the_error_gate(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    # Given a canary that cannot run a third of the inputs (the latency gate off: refusals are not slow)
    champion, _canary, rollout = start(
        registry, gateway, worker, "inf-canary-errors", fails_on_large_first_feature(), max_p95_ratio=None
    )

    # When traffic flows while the analysis runs
    sent = drive(gateway, "inf-canary-errors", rollout, bad_input=lambda i: i % 3 == 0)

    # Then the error gate rolled it back, with its figures
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert rollout.outcome["gate"] == "error_rate_increase"
    gate = next(g for g in rollout.outcome["figures"]["gates"] if g["name"] == "error_rate_increase")
    assert gate["passed"] is False
    assert gate["value"] > gate["threshold"] == 0.01
    assert rollout.outcome["figures"]["figures"]["canary"]["errors"].get("400", 0) > 0
    # production never moved, and the gateway routes without the canary
    assert registry_services.serving_version(champion.model) == champion
    assert services.routing_for(champion.model) is None
    actions = audit_actions(rollout)
    assert actions[0] == "rollout.canary_started"
    assert actions[-1] == "rollout.rolled_back"
    assert "rollout.promoted" not in actions
    # no request failed but the canary's own refusals of inputs it cannot run (error answers carry no
    # arm header; the champion answers every input, so a refusal can only come from the canary)
    for s in sent:
        if s.status != 200:
            assert (s.status, s.bad_input) == (400, True), s
            assert "the model could not run on this input" in s.error
    assert any(s.status == 400 for s in sent)
    assert all(s.status == 200 for s in sent if not s.bad_input)
    assert {s.arm for s in sent if s.bad_input and s.status == 200} == {"champion"}
    last_round = sent[-40:]
    assert {(s.arm, s.version) for s in last_round} == {("champion", str(champion.number))}


def test_a_much_slower_canary_is_rolled_back_by_the_latency_gate(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    # Given a canary with the same signature but about a thousand times the compute
    champion, _canary, rollout = start(registry, gateway, worker, "inf-canary-slow", much_slower())

    # When traffic flows while the analysis runs
    # (one at a time, the analysis between rounds: on a small machine, queueing and the analysis
    # thread would otherwise stretch both arms' tails)
    sent = drive(gateway, "inf-canary-slow", rollout, bad_input=lambda i: False, concurrency=1, analyse_during=False)

    # Then the p95 gate rolled it back, with its figures
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK, rollout.outcome
    assert rollout.outcome["gate"] == "p95_ratio"
    gate = next(g for g in rollout.outcome["figures"]["gates"] if g["name"] == "p95_ratio")
    assert gate["passed"] is False
    assert gate["value"] > gate["threshold"] == 1.25
    figures = rollout.outcome["figures"]["figures"]
    assert figures["canary"]["p95"] > figures["champion"]["p95"]
    assert registry_services.serving_version(champion.model) == champion
    assert services.routing_for(champion.model) is None
    actions = audit_actions(rollout)
    assert actions[0] == "rollout.canary_started"
    assert actions[-1] == "rollout.rolled_back"
    # slow is not failed: every request was answered
    assert [s for s in sent if s.status != 200] == []
    assert {s.arm for s in sent} == {"champion", "canary"}
    assert {(s.arm, s.version) for s in sent[-40:]} == {("champion", str(champion.number))}


def test_a_healthy_canary_is_promoted_through_every_step_without_failing_a_request(
    registry: Registry, worker: Workers, gateway: Gateway
) -> None:
    # Given a canary as fast and as sound as the champion (a latency margin for a busy test machine)
    champion, canary, rollout = start(
        registry, gateway, worker, "inf-canary-ok", champion_model(seed=1), max_p95_ratio=3.0
    )

    # When traffic flows while the analysis runs
    sent = drive(gateway, "inf-canary-ok", rollout, bad_input=lambda i: False)

    # Then it went through 20 %, 60 % and 100 % and was promoted
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PROMOTED, rollout.outcome
    assert rollout.outcome["winner"] == "canary"
    assert rollout.outcome["version"] == canary.number
    assert rollout.step == 2
    assert audit_actions(rollout) == [
        "rollout.canary_started",
        "rollout.step_advanced",
        "rollout.step_advanced",
        "rollout.promoted",
    ]
    advanced = AuditEntry.objects.filter(action="rollout.step_advanced", object_id=str(rollout.pk)).order_by("id")
    assert [entry.after["arms"]["canary"]["weight"] for entry in advanced] == [60, 100]
    moved = AuditEntry.objects.filter(action="alias.moved", object_type="registry.alias").latest("id")
    assert (moved.actor_name, moved.before, moved.after) == ("system", {"version": 1}, {"version": 2})
    # production is the canary now, and the gateway serves it as the champion
    assert registry_services.serving_version(champion.model) == canary
    assert services.routing_for(champion.model) is None
    assert {(s.arm, s.version) for s in sent[-40:]} == {("champion", str(canary.number))}
    # no request failed because of a switch, and both versions served along the way
    assert [s for s in sent if s.status != 200] == []
    assert {s.arm for s in sent} == {"champion", "canary"}
