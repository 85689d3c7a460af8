"""Batching arithmetic: which queued requests run together, and how outputs are
split back. Pure functions, no Django, no Redis."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dataplane.wire import WireRequest


@dataclass
class Batch:
    requests: list[WireRequest]
    rows: list[int]  # rows each request contributes, in order

    @property
    def size(self) -> int:
        return sum(self.rows)


def _shape_key(request: WireRequest) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Requests can share a batch when every input matches beyond the first dimension."""
    return tuple(sorted((name, tuple(array.shape[1:])) for name, array in request.inputs.items()))


def plan_batches(
    requests: Sequence[WireRequest], max_batch_size: int, batch_dim: bool, preferred: Sequence[int] = ()
) -> list[Batch]:
    """Group requests into batches of at most `max_batch_size` rows, in arrival order
    within each shape group. Without a batch dimension each request runs alone.

    With preferred sizes, a batch that would exceed the largest preferred size
    that fits is cut there, as Triton does; leftovers form the next batch.
    """
    if not batch_dim or max_batch_size <= 1:
        return [Batch([r], [r.rows]) for r in requests]
    groups: dict[tuple[tuple[str, tuple[int, ...]], ...], list[WireRequest]] = {}
    for request in requests:
        groups.setdefault(_shape_key(request), []).append(request)
    batches: list[Batch] = []
    for group in groups.values():
        index = 0
        while index < len(group):
            remaining = sum(r.rows for r in group[index:])
            fits = [p for p in preferred if 0 < p <= min(remaining, max_batch_size)]
            target = max(fits) if fits else max_batch_size
            batch = Batch([], [])
            while index < len(group) and (not batch.requests or batch.size + group[index].rows <= target):
                batch.requests.append(group[index])
                batch.rows.append(group[index].rows)
                index += 1
            batches.append(batch)
    return batches


def concatenate(batch: Batch, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    if len(batch.requests) == 1:
        return {name: batch.requests[0].inputs[name] for name in input_names}
    return {name: np.concatenate([r.inputs[name] for r in batch.requests], axis=0) for name in input_names}


def split(batch: Batch, outputs: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Per request, its rows of every output."""
    if len(batch.requests) == 1:
        return [list(outputs)]
    bounds = np.cumsum([0, *batch.rows])
    return [[output[start:end] for output in outputs] for start, end in itertools.pairwise(bounds)]
