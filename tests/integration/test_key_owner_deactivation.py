"""Deactivating a user stops their keys on every web process within one second.

Two real web processes (uvicorn, as production runs them) each cache the key's
record; the deactivation is a plain `save()`, as the admin, a script or the shell
makes it. The gateway authenticates before it looks a model up, so a model that
does not exist answers 404 to a good key and 401 to a refused one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from accounts import services
from tests.support.processes import WebProcess, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

PATH = "/v2/models/nobody-here"


def test_deactivating_a_user_stops_their_keys_on_every_web_process_within_one_second(
    viewer: Any, tmp_path: Path, redis_client: Any
) -> None:
    _, secret = services.create_key(viewer, name="shared", model_patterns=["*"], actions=["read"])
    headers = {"authorization": f"Bearer {secret}"}
    webs = [WebProcess(tmp_path / f"web{i}.log") for i in range(2)]
    try:
        for web in webs:
            assert web.wait_ready(), web.log()
            # The first request starts the process's notice subscription; records are cached once it is up.
            assert wait_for(lambda web=web: web.request("GET", PATH, headers=headers)[0] == 404, timeout=5)
            time.sleep(0.2)
            assert web.request("GET", PATH, headers=headers)[0] == 404

        viewer.is_active = False
        viewer.save()
        deactivated = time.monotonic()

        for web in webs:
            assert wait_for(
                lambda web=web: web.request("GET", PATH, headers=headers)[0] == 401, timeout=1.0, interval=0.02
            ), web.log()
        assert time.monotonic() - deactivated < 1.0
    finally:
        for web in webs:
            web.stop()
