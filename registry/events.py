"""Telling the gateways and workers that the registry changed.

A change publishes the model's name on one Redis channel after its
transaction commits; every web process drops its cached entry for that model
and every worker re-reads the versions it serves, well within a second.
"""

from __future__ import annotations

import logging

import redis
from django.db import transaction

from controlplane.redis_client import get_redis, redis_keys

logger = logging.getLogger(__name__)


def catalog_changed(model_name: str) -> None:
    def publish() -> None:
        try:
            get_redis().publish(redis_keys().catalog_channel(), model_name)
        except redis.RedisError:
            # Caches fall back to their short TTL; the change itself is committed.
            logger.warning("could not publish a registry change for %s", model_name, exc_info=True)

    transaction.on_commit(publish)
