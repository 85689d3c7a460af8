"""Priority levels: which requests a worker takes first, and how much of a version's
queue each level may fill. Shared by the key plans (accounts), the gateway and the
workers. Pure, no Django, no Redis.

A version's `max_queue_size` bounds what waits over all levels together. A level
may enqueue while the total is below its share of it, so under overload the low
level is refused (503) first, then normal, and high still finds room: with the
default 1024, low stops at 512 queued, normal at 819, high at 1024. Workers take
the highest non-empty level first (workers/intake.py), so a high request waits
behind at most the batch already running, never behind the low backlog.
"""

from __future__ import annotations

import math

HIGH, NORMAL, LOW = "high", "normal", "low"
# Highest first: the order workers take requests in.
LEVELS: tuple[str, ...] = (HIGH, NORMAL, LOW)
# Keys without a plan follow the default plan; anonymous requests (keys not required) get this.
DEFAULT_LEVEL = NORMAL
# Shadow copies never affect a client's answer, so they yield to every client.
SHADOW_LEVEL = LOW
# Of the version's max_queue_size, what each level may fill (all levels' requests counted).
QUEUE_SHARE: dict[str, float] = {HIGH: 1.0, NORMAL: 0.8, LOW: 0.5}


def queue_cap(max_queue_size: int, level: str) -> int:
    """Requests (of every level) that may be queued before this level is refused; at least 1."""
    return max(1, math.floor(max_queue_size * QUEUE_SHARE[level]))


def level_rank(level: str) -> int:
    """0 for the highest level."""
    return LEVELS.index(level)
