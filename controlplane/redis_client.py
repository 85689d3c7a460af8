"""The process-wide synchronous Redis client for Django-side code and workers, the
configured Redis (a plain server, a Sentinel-watched primary or a cluster:
dataplane/connection.py), and the configured key names (dataplane/keys.py)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings

from dataplane.connection import RedisTarget, parse_target, sync_client
from dataplane.keys import RedisKeys


def redis_target() -> RedisTarget:
    """Read from the settings at each call (tests point REDIS_URL elsewhere); parsing is cached."""
    return _parse(
        settings.REDIS_URL,
        settings.REDIS_SENTINELS,
        settings.REDIS_SENTINEL_MASTER,
        settings.REDIS_CLUSTER,
        settings.REDIS_SENTINEL_PASSWORD,
    )


@functools.lru_cache(maxsize=16)
def _parse(url: str, sentinels: str, master: str, cluster: bool, sentinel_password: str) -> RedisTarget:
    return parse_target(url, sentinels, master, cluster, sentinel_password)


@functools.cache
def get_redis() -> redis.Redis:
    return new_redis(socket_timeout=5, health_check_interval=30)


def new_redis(
    socket_timeout: float | None = None, socket_connect_timeout: float = 2, health_check_interval: int = 0
) -> redis.Redis:
    """A client of its own (a blocking reader, a probe with its own timeout) to the configured Redis."""
    return sync_client(
        redis_target(),
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        health_check_interval=health_check_interval,
    )


def redis_keys() -> RedisKeys:
    """The key names under the configured prefix. Not cached: tests change the prefix per process."""
    return RedisKeys(str(settings.TURNOUT["REDIS_PREFIX"]), cluster=redis_target().cluster)
