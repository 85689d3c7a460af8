"""Which live workers serve which version, with which execution provider.

Workers write `{prefix}:v{id}:served_by` (a hash: worker name -> provider);
the gateway reads it for the model ready and metadata answers, counting only
workers whose heartbeat is fresh. No Django imports.
"""

from __future__ import annotations

import time
from typing import Any


def served_by_key(prefix: str, version_id: int) -> str:
    return f"{prefix}:v{version_id}:served_by"


def workers_key(prefix: str) -> str:
    return f"{prefix}:workers"


async def read_served_by(client: Any, prefix: str, version_id: int, ttl_seconds: float | None = None) -> dict[str, str]:
    from django.conf import settings

    ttl = ttl_seconds if ttl_seconds is not None else float(settings.TURNOUT["WORKER_TTL_SECONDS"])
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(served_by_key(prefix, version_id))
    pipe.zrangebyscore(workers_key(prefix), time.time() - ttl, "+inf")
    served, alive = await pipe.execute()
    alive_names = {a.decode() if isinstance(a, bytes) else a for a in alive}
    result = {}
    for worker, provider in served.items():
        name = worker.decode() if isinstance(worker, bytes) else worker
        if name in alive_names:
            result[name] = provider.decode() if isinstance(provider, bytes) else provider
    return result
