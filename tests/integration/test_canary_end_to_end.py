"""Canaries end to end: a real worker serves both versions, traffic goes through the
in-process gateway with many distinct routing keys, and the analysis beat runs
(`run_due_analyses`, in a thread, while requests are in flight) until the
canary is promoted or rolled back.

In each case the `production` alias, the gateway's routing and the audit log end
in the right state, and no request fails because of a switch: every answer is a
200, except the canary's own refusals of inputs it cannot run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from audit.models import AuditEntry
from registry import services as registry_services
from rollouts import services
from rollouts.analysis import run_due_analyses
from rollouts.models import Rollout, RolloutStatus
from tests.integration.rollouts import in_thread, keyed, run, wait_for_routing
from tests.support.rollout_models import body, champion_model, fails_on_large_first_feature, much_slower
from tests.support.serving import Registry, Workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.timeout(180)]

FAST_STEPS = {"steps": [20, 60, 100], "step_seconds": 1, "analysis_interval_seconds": 1}
PER_ROUND = 40


@dataclass
class Sent:
    key: str
    bad_input: bool
    status: int
    arm: str | None
    version: str | None
    error: str


def drive(
    gateway: Gateway,
    model: str,
    rollout: Rollout,
    bad_input: Callable[[int], bool],
    concurrency: int = PER_ROUND,
    analyse_during: bool = True,
    deadline_s: float = 90,
) -> list[Sent]:
    """Rounds of requests, `concurrency` at a time, each with a key never used before, with an analysis
    running in a thread during each round, until the rollout has ended and the gateway routes without it."""
    sent: list[Sent] = []
    counter = 0

    async def one_round() -> None:
        nonlocal counter
        await gateway.app.recorder.flush()  # the figures the analysis reads
        analysis = asyncio.get_running_loop().run_in_executor(None, in_thread(run_due_analyses))
        if not analyse_during:
            await analysis
        keys = [f"client-{counter + i}" for i in range(PER_ROUND)]
        bad = [bad_input(counter + i) for i in range(PER_ROUND)]
        counter += PER_ROUND
        answers = []
        for wave in range(0, PER_ROUND, concurrency):
            answers += await asyncio.gather(
                *(
                    gateway.ainfer(model, body(50.0 if b else 1.0), headers=keyed(k))
                    for k, b in zip(keys[wave : wave + concurrency], bad[wave : wave + concurrency], strict=True)
                )
            )
        await analysis
        for key, b, answer in zip(keys, bad, answers, strict=True):
            error = answer.json().get("error", "") if answer.status != 200 else ""
            sent.append(
                Sent(
                    key,
                    b,
                    answer.status,
                    answer.headers.get("x-turnout-arm"),
                    answer.headers.get("x-turnout-model-version"),
                    error,
                )
            )

    deadline = time.monotonic() + deadline_s
    while True:
        run(gateway, one_round())
        rollout.refresh_from_db()
        if not rollout.is_active:
            break
        assert time.monotonic() < deadline, f"still {rollout.status} at step {rollout.step}: {rollout.last_analysis}"
    wait_for_routing(gateway, model, lambda routing: routing is None)
    run(gateway, one_round())  # after the switch, too
    return sent


def audit_actions(rollout: Rollout) -> list[str]:
    entries = AuditEntry.objects.filter(object_type="rollouts.rollout", object_id=str(rollout.pk))
    return list(entries.order_by("created_at", "id").values_list("action", flat=True))


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
