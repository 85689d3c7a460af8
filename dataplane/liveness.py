"""Who is alive and what each serves, in Redis.

Each worker process writes its name into one sorted set, scored by the time of
its last heartbeat, and its description beside it. A worker is alive while its
score is younger than the TTL; readers never need a Celery broadcast (`inspect
ping` waits a full second for replies that may never come), only one
ZRANGEBYSCORE. Workers also write, per version, which of them serve it with
which execution provider; the gateway reads that for the ready and metadata
answers, counting only live workers. No Django imports: callers pass the keys
and the TTL.
"""

from __future__ import annotations

import json
import time
from typing import Any

from dataplane.keys import RedisKeys

# A worker's entry in a version's served_by hash before the session is loaded;
# once loaded, the entry is its execution provider.
NOT_LOADED = "not loaded (loads on first use)"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def record_heartbeat(client: Any, keys: RedisKeys, name: str, info: dict[str, Any], ttl_seconds: float) -> None:
    """Mark `name` alive now and store what it reports about itself."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.workers(), {name: now})
    pipe.set(keys.worker_info(name), json.dumps({**info, "heartbeat_at": now}), ex=max(1, int(ttl_seconds * 3)))
    # Forget workers that died long ago so the set stays small.
    pipe.zremrangebyscore(keys.workers(), "-inf", now - 24 * 3600)
    pipe.execute()


def forget_worker(client: Any, keys: RedisKeys, name: str) -> None:
    """A clean shutdown removes the worker at once rather than waiting for the TTL."""
    pipe = client.pipeline(transaction=False)
    pipe.zrem(keys.workers(), name)
    pipe.delete(keys.worker_info(name))
    pipe.execute()


def alive_since(ttl_seconds: float) -> float:
    """The oldest heartbeat time that still counts as alive."""
    return time.time() - ttl_seconds


def alive_workers(client: Any, keys: RedisKeys, ttl_seconds: float) -> list[str]:
    return [_text(m) for m in client.zrangebyscore(keys.workers(), alive_since(ttl_seconds), "+inf")]


def record_beat(client: Any, keys: RedisKeys, info: dict[str, Any], ttl_seconds: float) -> None:
    """The beat process is alive now; the key expires on its own when it stops."""
    client.set(keys.beat(), json.dumps({**info, "heartbeat_at": time.time()}), ex=max(1, int(ttl_seconds * 3)))


def beat_state(raw: bytes | str | None, ttl_seconds: float, now: float | None = None) -> dict[str, Any]:
    """What readers show of beat: alive (a heartbeat within the TTL), since when, and where."""
    if not raw:
        return {"ok": False, "error": "beat has sent no heartbeat; start exactly one `celery -A controlplane beat`"}
    info = json.loads(raw)
    age = max(0.0, (now if now is not None else time.time()) - float(info.get("heartbeat_at", 0)))
    state = {"ok": age <= ttl_seconds, "seconds_ago": round(age, 1), "pid": info.get("pid"), "host": info.get("host")}
    if not state["ok"]:
        state["error"] = f"beat's last heartbeat was {age:.0f} s ago: canary analysis and rollups are stopped"
    return state


async def read_served_by(client: Any, keys: RedisKeys, version_id: int, ttl_seconds: float) -> dict[str, str]:
    """worker name -> execution provider, for the live workers serving this version."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.served_by(version_id))
    pipe.zrangebyscore(keys.workers(), alive_since(ttl_seconds), "+inf")
    served, alive = await pipe.execute()
    return _live(served, alive)


def served_by_now(client: Any, keys: RedisKeys, version_id: int, ttl_seconds: float) -> dict[str, str]:
    """As `read_served_by`, with a synchronous client (the dashboard and the management API)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.served_by(version_id))
    pipe.zrangebyscore(keys.workers(), alive_since(ttl_seconds), "+inf")
    served, alive = pipe.execute()
    return _live(served, alive)


def _live(served: dict[Any, Any], alive: list[Any]) -> dict[str, str]:
    alive_names = {_text(a) for a in alive}
    return {_text(worker): _text(provider) for worker, provider in served.items() if _text(worker) in alive_names}
