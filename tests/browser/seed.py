"""The browser suite's committed data, made once per session through the services:
users, models with ready versions, an A/B experiment, an API key, and some real
traffic through the web process so that tables and charts have figures."""

from __future__ import annotations

import json
from typing import Any

from accounts import services as accounts_services
from registry.demo_models import build_mlp
from rollouts import services as rollout_services
from tests.factories import AdminFactory
from tests.support.processes import wait_for
from tests.support.rollout_models import champion_model
from tests.support.serving import Registry

REQUEST = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}]}


def infer(stack: Any, model: str, secret: str, headers: dict[str, str] | None = None) -> int:
    status, _, _ = stack.web.request(
        "POST",
        f"/v2/models/{model}/infer",
        json.dumps(REQUEST).encode(),
        {"Authorization": f"Bearer {secret}", "Content-Type": "application/json", **(headers or {})},
    )
    return status


def seed(registry: Registry, stack: Any) -> dict[str, Any]:
    owner = registry.owner
    admin = AdminFactory(username="ada")
    registry.add("brw-browser", champion_model(seed=1))
    registry.add("brw-canary", champion_model(seed=2))
    canary = registry.add("brw-canary", champion_model(seed=3), production=False)
    first = registry.add("brw-ab", champion_model(seed=4))
    second = registry.add("brw-ab", champion_model(seed=5), production=False)
    # brw-next: a ready v2 beside production, whose next steps offer everything; brw-wide: a
    # ready v2 that takes five features where production takes four, which no rollout may take.
    registry.add("brw-next", champion_model(seed=6))
    registry.add("brw-next", champion_model(seed=7), production=False)
    registry.add("brw-wide", champion_model(seed=8))
    wide = registry.add("brw-wide", build_mlp(5, [8], 3, seed=9), production=False)
    experiment = rollout_services.start_experiment(
        first.model, [("a", first, 50.0), ("b", second, 50.0)], actor=owner, control="a", minimum_effect=0.05
    )
    _, secret = accounts_services.create_key(
        owner, name="seed traffic", model_patterns=["*"], actions=["infer", "read"]
    )
    # The admin's own key, with a long name and several patterns: the keys page's widest row.
    admin_key, _ = accounts_services.create_key(
        admin,
        name="nightly scoring job of the fraud team",
        model_patterns=["brw-*", "fraud-*", "churn"],
        actions=["infer", "read", "manage"],
    )
    for model in ("brw-browser", "brw-ab", "brw-canary"):
        assert wait_for(lambda m=model: infer(stack, m, secret) == 200, timeout=60), stack.logs()
    for i in range(40):
        infer(stack, "brw-browser", secret)
        infer(stack, "brw-ab", secret, {experiment.routing_header: f"client-{i}"})
    return {
        "admin": admin,
        "owner": owner,
        "secret": secret,
        "experiment": experiment.pk,
        "canary_version": canary.number,
        "wide_version": wide.number,
        "admin_key": admin_key.public_id,
    }
