"""`/v2/health/ready`: 200 only when PostgreSQL and Redis answer and a worker is alive;
otherwise 503 naming the part that is down, recovering without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from controlplane.asgi import build_application
from controlplane.redis_client import redis_keys
from dataplane.liveness import record_heartbeat
from gateway.app import Gateway
from gateway.health import Readiness, database_conninfo
from tests.support.asgi import AsgiClient
from tests.support.processes import wait_for
from tests.support.tcpproxy import TcpProxy
from tests.support.v2 import ready_status

pytestmark = pytest.mark.django_db


def beat(client: redis.Redis) -> None:
    """A heartbeat of a worker named worker@test, as a live worker sends it."""
    record_heartbeat(client, redis_keys(), "worker@test", {"pid": 1}, float(settings.TURNOUT["WORKER_TTL_SECONDS"]))


def test_no_live_worker_is_503_naming_the_workers(gateway_client: AsgiClient, redis_client: redis.Redis) -> None:
    response = gateway_client.get("/v2/health/ready")

    assert response.status == 503
    body = response.json()
    assert body["down"] == ["workers"]
    assert "celery -A controlplane worker" in body["checks"]["workers"]["error"]
    assert response.headers["retry-after"] == "5"


def test_a_recent_heartbeat_makes_it_ready(gateway_client: AsgiClient, redis_client: redis.Redis) -> None:
    record_heartbeat(
        redis_client, redis_keys(), "worker@test", {"pid": 1}, float(settings.TURNOUT["WORKER_TTL_SECONDS"])
    )

    status, body = ready_status(gateway_client)

    assert status == 200
    assert body["checks"]["workers"] == {"ok": True, "alive": 1}


def test_a_stale_heartbeat_does_not_count(gateway_client: AsgiClient, redis_client: redis.Redis) -> None:
    stale = time.time() - settings.TURNOUT["WORKER_TTL_SECONDS"] - 1
    redis_client.zadd(f"{settings.TURNOUT['REDIS_PREFIX']}:workers", {"worker@gone": stale})

    status, body = ready_status(gateway_client)

    assert status == 503
    assert body["down"] == ["workers"]


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    db = settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    proxy.start()
    yield proxy
    proxy.stop()


def test_database_down_is_503_naming_it_and_recovers_without_restart(
    db_proxy: TcpProxy, redis_client: redis.Redis
) -> None:
    db = settings.DATABASES["default"]
    conninfo = database_conninfo().replace(f"port={db['PORT']}", f"port={db_proxy.port}")
    gateway = Gateway(Readiness(conninfo=conninfo))
    client = AsgiClient(build_application(gateway))
    record_heartbeat(
        redis_client, redis_keys(), "worker@test", {"pid": 1}, float(settings.TURNOUT["WORKER_TTL_SECONDS"])
    )
    try:
        assert ready_status(client)[0] == 200

        db_proxy.stop()
        started = time.monotonic()
        status, body = ready_status(client)
        elapsed = time.monotonic() - started

        assert status == 503
        assert body["down"] == ["database"]
        assert "PostgreSQL" in body["checks"]["database"]["error"]
        assert elapsed < 5

        db_proxy.start()  # same port: the database is back
        record_heartbeat(
            redis_client, redis_keys(), "worker@test", {"pid": 1}, float(settings.TURNOUT["WORKER_TTL_SECONDS"])
        )
        assert wait_for(lambda: ready_status(client)[0] == 200, timeout=5)
    finally:
        client.loop.run_until_complete(gateway.readiness.close())
        client.close()


def test_redis_down_is_503_naming_redis_and_workers_unknown() -> None:
    gateway = Gateway(Readiness(redis_url="redis://127.0.0.1:1/0"))
    client = AsgiClient(build_application(gateway))
    try:
        status, body = ready_status(client)
    finally:
        client.loop.run_until_complete(gateway.readiness.close())
        client.close()

    assert status == 503
    assert body["down"] == ["redis", "workers"]
    assert "Redis unreachable" in body["checks"]["redis"]["error"]


@pytest.mark.django_db(transaction=True)  # the gateway reads the catalog on its own connection
def test_a_models_readiness_and_metadata_are_503_not_500_while_redis_is_down(ready_model: str, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    gateway = Gateway(Readiness(redis_url=settings.REDIS_URL))
    gateway.models.require_key = False
    client = AsgiClient(build_application(gateway))
    try:
        for path in (
            f"/v2/models/{ready_model}/ready",
            f"/v2/models/{ready_model}",
            f"/v2/models/{ready_model}/versions/1",
        ):
            response = client.get(path)
            assert response.status == 503, (path, response.status, response.body)
            assert "Redis is unreachable" in response.json()["error"]
            assert response.headers.get("retry-after") == "5"
    finally:
        client.loop.run_until_complete(gateway.close())
        client.close()
