"""Sticky traffic splitting. No Django imports.

A request's routing key (a header the client picks, else its API key) is hashed
with the rollout's id into one of 10,000 slots; arms own contiguous slot
ranges in proportion to their weights. The same key therefore reaches the same
arm for the whole life of a rollout, and different rollouts shuffle keys
independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

SLOTS = 10_000


def slot(rollout_id: int, routing_key: str) -> int:
    digest = hashlib.blake2b(f"{rollout_id}:{routing_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SLOTS


def bounds(weights: Sequence[float]) -> list[int]:
    """Cumulative slot bounds for weights (any positive scale, e.g. percentages)."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must add up to more than 0")
    edges = []
    running = 0.0
    for weight in weights:
        if weight < 0:
            raise ValueError("weights cannot be negative")
        running += weight
        edges.append(round(SLOTS * running / total))
    edges[-1] = SLOTS
    return edges


def choose(rollout_id: int, routing_key: str, edges: Sequence[int]) -> int:
    """Index of the arm that serves this key."""
    position = slot(rollout_id, routing_key)
    for index, edge in enumerate(edges):
        if position < edge:
            return index
    return len(edges) - 1


def mirrored(rollout_id: int, routing_key: str, fraction: float) -> bool:
    """Whether a request is copied to the shadow (sticky, like arms)."""
    return slot(rollout_id + 7919, routing_key) < fraction * SLOTS
