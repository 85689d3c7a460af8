"""Load and unload reach every live worker, and production is preloaded everywhere.

Two real worker processes serve the same model. Its versions have warm-up at
start switched off, so a loaded session can only come from the production
alias or an explicit load: moving `production` makes both workers load the new
version, an unload through the API frees it on both, a load brings it back,
and a worker started afterwards preloads the production version by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from controlplane.redis_client import get_redis, redis_keys
from dataplane.liveness import NOT_LOADED
from registry.demo_models import build_mlp
from registry.models import ModelVersion
from tests.support.clients import signed_in
from tests.support.processes import wait_for
from tests.support.serving import Registry, Workers, start_workers

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WORKER_NAMES = ["ctl-a", "ctl-b"]


@pytest.fixture(scope="module")
def workers(django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    started = start_workers(WORKER_NAMES, tmp_path_factory.mktemp("logs"), artifact_dir)
    yield started
    started.stop()


def states(version: ModelVersion) -> dict[str, str]:
    """worker name (without its host) -> its provider, or NOT_LOADED, for this version."""
    raw = get_redis().hgetall(redis_keys().served_by(version.pk))
    return {k.decode().split("@")[0]: v.decode() for k, v in raw.items()}


def wait_states(version: ModelVersion, wanted: str, names: list[str], workers: Workers, timeout: float = 30) -> None:
    """Wait until every named worker reports `wanted` ("loaded" or NOT_LOADED) for the version."""

    def reached() -> bool:
        now = states(version)
        if any(name not in now for name in names):
            return False
        return all((now[n] != NOT_LOADED) if wanted == "loaded" else (now[n] == NOT_LOADED) for n in names)

    assert wait_for(reached, timeout, 0.2), (
        f"{version}: wanted {wanted} on {names}, got {states(version)}\n{workers.log()}"
    )


def test_production_move_load_and_unload_reach_every_worker(workers: Workers, registry: Registry, owner: Any) -> None:
    api = signed_in(owner, APIClient)
    first = registry.add("inf-ctl", build_mlp(4, [8], 2, seed=1), warmup=False)
    second = registry.add("inf-ctl", build_mlp(4, [8], 2, seed=2), warmup=False, production=False)

    # Given: v1 is production (preloaded everywhere), v2 is served but not loaded.
    wait_states(first, "loaded", WORKER_NAMES, workers)
    wait_states(second, NOT_LOADED, WORKER_NAMES, workers)

    # When production moves to v2, both workers load it without a request.
    moved = api.put("/api/models/inf-ctl/aliases/production/", {"version": 2}, format="json")
    assert moved.status_code == 200, moved.content
    wait_states(second, "loaded", WORKER_NAMES, workers)

    # Unload frees v1 on both workers.
    unloaded = api.post("/api/models/inf-ctl/versions/1/unload/")
    assert unloaded.status_code == 202, unloaded.content
    wait_states(first, NOT_LOADED, WORKER_NAMES, workers)
    assert AuditEntry.objects.filter(action="version.unload_requested", object_id=str(first.pk)).count() == 1

    # Load brings it back on both.
    loaded = api.post("/api/models/inf-ctl/versions/1/load/")
    assert loaded.status_code == 202, loaded.content
    wait_states(first, "loaded", WORKER_NAMES, workers)
    assert AuditEntry.objects.filter(action="version.load_requested", object_id=str(first.pk)).count() == 1


def test_a_worker_started_later_preloads_the_production_version_only(
    workers: Workers, registry: Registry, owner: Any, tmp_path: Path, artifact_dir: Path
) -> None:
    old = registry.add("inf-late", build_mlp(4, [8], 2, seed=3), warmup=False)
    current = registry.add("inf-late", build_mlp(4, [8], 2, seed=4), warmup=False)  # production moves to v2
    wait_states(current, "loaded", WORKER_NAMES, workers)

    late = start_workers(["ctl-late"], tmp_path, artifact_dir)
    try:
        wait_states(current, "loaded", ["ctl-late"], late)
        wait_states(old, NOT_LOADED, ["ctl-late"], late)
    finally:
        late.stop()


def test_an_archived_version_is_dropped_by_every_worker(workers: Workers, registry: Registry, owner: Any) -> None:
    registry.add("inf-arch", build_mlp(4, [8], 2, seed=5))
    retired = registry.add("inf-arch", build_mlp(4, [8], 2, seed=6), production=False)
    wait_states(retired, "loaded", WORKER_NAMES, workers)  # warm-up at start is on

    archived = signed_in(owner, APIClient).post("/api/models/inf-arch/versions/2/archive/")

    assert archived.status_code == 200, archived.content
    assert wait_for(lambda: not set(WORKER_NAMES) & set(states(retired)), 30, 0.2), states(retired)
