"""A version's capacity on one worker: open-loop load (Poisson arrivals at increasing rates) fed
to a model of the worker's batching loop whose every batch is a real onnxruntime run, for a few
batch sizes and queue delays; the highest rate that keeps p99 within a target, and the settings
that reach it. Runs inside the capacity child (variants/capacity_child.py). No Django.

The batching model is workers/consumer.py's: an idle worker takes the first request at once with
whatever else is waiting, up to `max_batch_size`; when more than one request was waiting and the
batch is not full it lingers up to `max_queue_delay_ms` for more; then the batch runs. Time is
virtual (arrivals and waits are arithmetic) except each run, which is measured, so a sweep costs
its runs' CPU time only. Latency here is the worker's part (queue and compute), not the gateway's
or the network's (about a millisecond more on the benchmark machine, docs/benchmarks.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from registry.signature import Signature
from variants.comparison import inputs_for

RATE_FRACTIONS = (0.1, 0.25, 0.5, 0.7, 0.85, 1.0)
REQUESTS_PER_RATE = 300


def simulate(run: Callable[[int], float], arrivals: Sequence[float], max_batch: int, delay_s: float) -> list[float]:
    """Each request's latency (seconds) when requests arrive at `arrivals` (sorted, seconds) at a
    worker that batches as above; `run(rows)` runs a batch and returns its seconds."""
    latencies: list[float] = []
    clock, i, n = 0.0, 0, len(arrivals)
    while i < n:
        clock = max(clock, arrivals[i])
        j = i
        while j < n and j - i < max_batch and arrivals[j] <= clock:
            j += 1
        if 1 < j - i < max_batch and delay_s > 0:
            until = clock + delay_s
            while j < n and j - i < max_batch and arrivals[j] <= until:
                j += 1
            clock = until if j - i < max_batch else max(clock, arrivals[j - 1])
        finished = clock + run(j - i)
        latencies += [finished - arrivals[k] for k in range(i, j)]
        clock, i = finished, j
    return latencies


def poisson_arrivals(rate: float, count: int, rng: np.random.Generator) -> list[float]:
    return list(np.cumsum(rng.exponential(1 / rate, size=count)))


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Setting:
    max_batch_size: int
    max_queue_delay_ms: float


def settings_to_try(max_batch_size: int, batched: bool) -> list[Setting]:
    if not batched:
        return [Setting(1, 0.0)]
    sizes = sorted({size for size in (1, 8, 32, max_batch_size) if size <= max_batch_size})
    return [Setting(size, delay) for size in sizes for delay in ((0.0,) if size == 1 else (0.0, 2.0, 5.0))]


def sweep(run: Callable[[int], float], setting: Setting, capacity_rps: float, seed: int) -> list[dict[str, float]]:
    """p50/p95/p99 (ms) and throughput at each rate (a fraction of `capacity_rps`)."""
    rng = np.random.default_rng(seed)
    points = []
    for fraction in RATE_FRACTIONS:
        rate = capacity_rps * fraction
        arrivals = poisson_arrivals(rate, REQUESTS_PER_RATE, rng)
        latencies = simulate(run, arrivals, setting.max_batch_size, setting.max_queue_delay_ms / 1000)
        span = max(arrivals[-1], max(a + lat for a, lat in zip(arrivals, latencies, strict=True)))
        points.append(
            {
                "rate_rps": rate,
                "p50_ms": quantile(latencies, 0.5) * 1000,
                "p95_ms": quantile(latencies, 0.95) * 1000,
                "p99_ms": quantile(latencies, 0.99) * 1000,
                "throughput_rps": len(arrivals) / span if span > 0 else 0.0,
            }
        )
    return points


def recommend(results: list[dict[str, Any]], p99_target_ms: float) -> dict[str, Any] | None:
    """The setting that sustains the highest rate with p99 within the target (ties: smaller batch,
    shorter delay), or None when none does even at the lowest rate."""
    best: tuple[float, int, float, dict[str, Any], dict[str, float]] | None = None
    for result in results:
        meeting = [p for p in result["points"] if p["p99_ms"] <= p99_target_ms]
        if not meeting:
            continue
        point = max(meeting, key=lambda p: p["rate_rps"])
        key = (point["rate_rps"], -result["max_batch_size"], -result["max_queue_delay_ms"])
        if best is None or key > best[:3]:
            best = (*key, result, point)
    if best is None:
        return None
    _, _, _, result, point = best
    size = int(result["max_batch_size"])
    return {
        "max_batch_size": size,
        "max_queue_delay_ms": float(result["max_queue_delay_ms"]),
        "preferred_batch_sizes": [size] if size > 1 else [],
        "sustained_rps": point["rate_rps"],
        "p99_ms": point["p99_ms"],
    }


def measure(model: Any, signature: Signature, max_batch_size: int, p99_target_ms: float, seed: int) -> dict[str, Any]:
    """The whole report on one onnxruntime session: the estimated capacity (rows per second at the
    largest batch), each setting's sweep, and the recommendation."""
    batched = bool(signature.get("batch_dim"))
    largest = max_batch_size if batched else 1
    feeds = inputs_for(signature, largest, seed)
    names = [o.name for o in model.get_outputs()]

    def run(rows: int) -> float:
        sample = {k: v[:rows] for k, v in feeds.items()} if batched else feeds
        started = time.perf_counter()
        model.run(names, sample)
        return time.perf_counter() - started

    run(largest)  # warm-up
    capacity_rps = largest / min(run(largest) for _ in range(5))
    results = [
        {
            "max_batch_size": setting.max_batch_size,
            "max_queue_delay_ms": setting.max_queue_delay_ms,
            "points": sweep(run, setting, capacity_rps, seed),
        }
        for setting in settings_to_try(max_batch_size, batched)
    ]
    return {
        "p99_target_ms": p99_target_ms,
        "estimated_capacity_rps": capacity_rps,
        "settings": results,
        "recommendation": recommend(results, p99_target_ms),
    }
