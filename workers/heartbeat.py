"""Worker liveness in Redis.

Each worker process writes its name into one sorted set, scored by the time of
its last heartbeat. A worker is alive while its score is younger than the TTL;
readers never need a Celery broadcast (`inspect ping` waits a full second for
replies that may never come), only one ZRANGEBYSCORE.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings


def workers_key() -> str:
    return f"{settings.TURNOUT['REDIS_PREFIX']}:workers"


def worker_info_key(name: str) -> str:
    return f"{settings.TURNOUT['REDIS_PREFIX']}:worker:{name}"


def record_heartbeat(client: Any, name: str, info: dict[str, Any]) -> None:
    """Mark `name` alive now and store what it reports about itself."""
    now = time.time()
    ttl = settings.TURNOUT["WORKER_TTL_SECONDS"]
    pipe = client.pipeline(transaction=False)
    pipe.zadd(workers_key(), {name: now})
    pipe.set(worker_info_key(name), json.dumps({**info, "heartbeat_at": now}), ex=max(1, int(ttl * 3)))
    # Forget workers that died long ago so the set stays small.
    pipe.zremrangebyscore(workers_key(), "-inf", now - 24 * 3600)
    pipe.execute()


def forget_worker(client: Any, name: str) -> None:
    """A clean shutdown removes the worker at once rather than waiting for the TTL."""
    pipe = client.pipeline(transaction=False)
    pipe.zrem(workers_key(), name)
    pipe.delete(worker_info_key(name))
    pipe.execute()


def alive_since() -> float:
    """The oldest heartbeat time that still counts as alive."""
    return time.time() - settings.TURNOUT["WORKER_TTL_SECONDS"]


def alive_workers(client: Any) -> list[str]:
    members = client.zrangebyscore(workers_key(), alive_since(), "+inf")
    return [m.decode() if isinstance(m, bytes) else m for m in members]
