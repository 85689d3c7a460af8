"""Fixtures for the rollout tests.

Personas, besides `admin` and `viewer` from tests/conftest.py:
- `owner` (olga): a maintainer who registers the models, so maintains them:
  starts, pauses, promotes and aborts their rollouts.
- `outsider` (otto): a maintainer too, but of another model only; on the
  owner's models they are a viewer.
- `viewer` (vic): signed in, no grants: reads every rollout, changes none.

Two set-ups:
- With real workers (`worker`, `gateway`, `registry` from tests/inference):
  transactional tests whose models are named `inf-...` so the module's worker
  serves them; traffic goes through the in-process gateway.
- Without workers (`catalog`): the API and page tests share one registry for
  the module, committed once (validating versions takes a child process each);
  each test runs in a transaction rolled back at its end.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import connection

from registry import services
from registry.models import RegisteredModel
from tests.factories import UserFactory
from tests.inference import conftest as inference
from tests.support.rollout_models import champion_model
from tests.support.serving import Registry, committed_registry
from tests.support.v2 import Gateway

T = TypeVar("T")

# The inference tests' fixtures, offered here too: a module's worker process, the in-process gateway,
# the registry that registers models as users do (its `owner` is olga, from tests/conftest.py).
artifact_dir = inference.artifact_dir
artifacts = inference.artifacts
registry = inference.registry
worker = inference.worker
gateway = inference.gateway
redis_conn = inference.redis_conn

# --- Driving the in-process gateway ---------------------------------------------------------------------------------


def run(gateway: Gateway, coroutine: Awaitable[T]) -> T:
    return gateway.client.loop.run_until_complete(coroutine)


def keyed(key: str, header: str = "x-routing-key", **extra: str) -> dict[str, str]:
    return {header: key, **extra}


async def send_all(gateway: Gateway, model: str, requests: list[tuple[dict[str, Any], dict[str, str]]]) -> list[Any]:
    return list(await asyncio.gather(*(gateway.ainfer(model, b, headers=h) for b, h in requests)))


def in_thread(work: Callable[[], T]) -> Callable[[], T]:
    """`work` with its own database connection, closed afterwards (as the gateway's catalog thread does)."""

    def wrapped() -> T:
        try:
            return work()
        finally:
            connection.close()

    return wrapped


def wait_for_routing(gateway: Gateway, model: str, wanted: Callable[[Any], bool], timeout: float = 5.0) -> None:
    """Until the gateway's catalog entry for `model` has routing that satisfies `wanted`
    (the change notice travels over Redis pub/sub and is read on the gateway's loop)."""

    async def poll() -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            entry = await gateway.app.catalog.get(model)
            if wanted(entry.routing if entry is not None else None):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the gateway's routing for {model} is still {entry.routing if entry else None}")
            await asyncio.sleep(0.05)

    run(gateway, poll())


def forget_figures(redis_conn: Any, model: str) -> None:
    """Drop the gateway's per-minute figures of `model`: a test reusing a model name (and so its version
    numbers) within the minute must not count an earlier test's requests."""
    from django.conf import settings

    for key in redis_conn.scan_iter(match=f"{settings.TURNOUT['REDIS_PREFIX']}:obs:*:{model}:*"):
        redis_conn.delete(key)


# --- The registry shared by the API and page tests -------------------------------------------------------------------


@dataclass
class Catalog:
    """`fraud` (owner: olga): v1 production, v2 and v3 ready, v4 pending. `churn` (owner: otto): v1 production."""

    registry: Registry
    owner: Any
    maintainer: Any


@pytest.fixture(scope="module")
def catalog(django_db_setup: Any, django_db_blocker: Any, artifact_dir: Path) -> Iterator[Catalog]:
    with committed_registry(django_db_blocker, artifact_dir) as shared:
        otto = UserFactory(username="otto", maintainer=True)
        for seed in range(3):
            shared.add("fraud", champion_model(seed), production=seed == 0)
        pending = services.upload_version(
            RegisteredModel.objects.get(name="fraud"), io.BytesIO(champion_model(9)), actor=shared.owner
        )
        assert pending.version.number == 4
        Registry(otto).add("churn", champion_model(5))
        yield Catalog(shared, shared.owner, otto)
