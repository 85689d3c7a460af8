"""API keys across real web processes: a revocation reaches every one of them within a second."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from accounts import services
from tests.support.clients import bearer
from tests.support.processes import WebProcess, wait_for

# The web processes read keys and models on their own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.integration
def test_revocation_reaches_every_web_process_within_one_second(
    viewer: Any, ready_model: str, tmp_path: Path, redis_client: Any
) -> None:
    key, secret = services.create_key(viewer, name="shared", model_patterns=["*"], actions=["read"])
    webs = [WebProcess(tmp_path / f"web{i}.log", ARTIFACT_ROOT=str(tmp_path)) for i in range(2)]
    try:
        for web in webs:
            assert web.wait_ready(), web.log()
            assert web.request("GET", f"/v2/models/{ready_model}", headers=bearer(secret))[0] == 200

        services.revoke_key(key, actor=viewer)
        revoked_at = time.monotonic()

        for web in webs:
            assert wait_for(
                lambda web=web: web.request("GET", f"/v2/models/{ready_model}", headers=bearer(secret))[0] == 401,
                timeout=1.0,
                interval=0.02,
            ), web.log()
        assert time.monotonic() - revoked_at < 1.0
    finally:
        for web in webs:
            web.stop()
