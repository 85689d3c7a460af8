"""Celery beat's scheduler, with a heartbeat.

Beat must run exactly once, and nothing else notices when it stops: canaries stop
advancing and rollups stop moving. Every turn of its loop (at most
CELERY_BEAT_MAX_LOOP_INTERVAL apart) writes a heartbeat to Redis, which readiness
and the dashboard's services panel show. `CELERY_BEAT_SCHEDULER` points here.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import redis
from celery.beat import PersistentScheduler
from django.conf import settings

from controlplane.redis_client import get_redis, redis_keys
from dataplane.liveness import record_beat

logger = logging.getLogger(__name__)


class HeartbeatScheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._last_beat = 0.0
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        if now - self._last_beat >= float(settings.TURNOUT["BEAT_HEARTBEAT_SECONDS"]):
            self._last_beat = now
            try:
                info = {"pid": os.getpid(), "host": socket.gethostname()}
                record_beat(get_redis(), redis_keys(), info, float(settings.TURNOUT["BEAT_TTL_SECONDS"]))
            except redis.RedisError as exc:
                logger.warning("beat: heartbeat failed: %s", exc)
        return float(super().tick(*args, **kwargs))
