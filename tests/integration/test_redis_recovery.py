"""A worker whose request stream vanished (Redis restarted without persistence,
or was flushed) recreates it and goes on serving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from registry.demo_models import build_mlp
from tests.support.processes import wait_for
from tests.support.v2 import Gateway, tensor

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_deleted_stream_and_group_are_recreated_and_requests_served_again(
    serve: Callable[..., Any], gateway: Gateway, redis_conn: redis.Redis
) -> None:
    version = serve("inf-recover", build_mlp(4, [8], 2))
    body = {
        "inputs": [tensor("input", "FP32", np.ones((1, 4), dtype=np.float32))],
        "parameters": {"timeout": 1_000_000},
    }
    assert gateway.infer("inf-recover", body).status == 200

    redis_conn.delete(redis_keys().request_stream(version.id, NORMAL))

    # The first request after the loss may time out while the group is recreated; then all succeed.
    assert wait_for(lambda: gateway.infer("inf-recover", body).status == 200, timeout=15)
    assert all(gateway.infer("inf-recover", body).status == 200 for _ in range(5))
