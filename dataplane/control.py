"""Commands from the control plane to every live worker: load or unload a version now.

One Redis stream that each worker reads in full with plain XREAD (no consumer
group), from the last entry it has seen: every live worker sees every command,
and a worker that loses Redis for a moment catches up from where it was instead
of missing what was sent meanwhile. A worker starts reading at the stream's end:
commands are about the sessions of the workers alive when they were sent. The
standing state (production versions preloaded) is no message at all: each
worker derives it from the registry (workers/serving.py), so a worker that
restarts converges to it without being told.

Celery's broadcast queue did this job before and never delivered: kombu's Redis
transport treats an exchange the sending process has not declared as direct, so
each command went into a `bcast.<uuid>` list that no worker reads.

No Django imports: callers pass the client and the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplane.keys import RedisKeys

LOAD = "load"  # load (and warm up) the version now instead of on its first request
UNLOAD = "unload"  # free the version's session; the next request loads it again
ACTIONS = (LOAD, UNLOAD)
# Commands kept in the stream: far more than a worker can fall behind by in a
# reconnect, small enough to never matter in memory.
MAX_LENGTH = 1000


@dataclass(frozen=True)
class Command:
    entry_id: str
    action: str
    version_id: int


def send(client: Any, keys: RedisKeys, action: str, version_id: int) -> str:
    """Append a command for every worker; returns its entry id."""
    if action not in ACTIONS:
        raise ValueError(f"unknown control action {action!r}")
    entry_id = client.xadd(
        keys.control_stream(),
        {"action": action, "version": str(version_id)},
        maxlen=MAX_LENGTH,
        approximate=True,
    )
    return _text(entry_id)


def last_id(client: Any, keys: RedisKeys) -> str:
    """Where a worker that starts now begins reading: after the newest command."""
    newest = client.xrevrange(keys.control_stream(), count=1)
    return _text(newest[0][0]) if newest else "0-0"


def read(client: Any, keys: RedisKeys, after: str, block_ms: int) -> list[Command]:
    """Commands after `after`, waiting up to `block_ms` for the first. Malformed entries
    come back with action "" so the reader still moves past them."""
    response = client.xread({keys.control_stream(): after}, block=block_ms, count=100)
    commands = []
    for _, entries in response or []:
        for entry_id, fields in entries:
            action = _text(fields.get(b"action", fields.get("action", "")))
            try:
                version_id = int(_text(fields.get(b"version", fields.get("version", ""))))
            except ValueError:
                action, version_id = "", 0
            commands.append(Command(_text(entry_id), action if action in ACTIONS else "", version_id))
    return commands


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
