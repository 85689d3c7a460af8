"""The process-wide synchronous Redis client for Django-side code and workers, and the
configured key names (dataplane/keys.py)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings

from dataplane.keys import RedisKeys


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


def redis_keys() -> RedisKeys:
    """The key names under the configured prefix. Not cached: tests change the prefix per process."""
    return RedisKeys(str(settings.TURNOUT["REDIS_PREFIX"]))
