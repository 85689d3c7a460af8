"""What the gateway records per answered inference request.

Per request: Prometheus counters and histograms (labels model, version, arm,
code/stage), and this process's per-minute histograms (a pipeline's stages too,
observability/stages.py), aggregated in memory and
flushed to Redis once a second in one pipeline. Beat rolls the Redis minutes
up into PostgreSQL (observability/rollup.py). Tensors are never
recorded.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from dataplane.keys import RedisKeys
from observability import metrics, sketch, stages

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MINUTE_TTL_SECONDS = 3 * 3600


class BulkHistogram:
    """Observations of one histogram child, counted here and written to it once a second.

    In multiprocess mode every `observe` takes a lock and writes two memory-mapped
    values; on the inference path that was a measurable share of the web
    process's time. Counting per bucket here and adding the counts at each flush
    gives Prometheus the same figures, at most a second later.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_total")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._total += value

    def apply(self) -> None:
        if not any(self._counts):
            return
        for index, count in enumerate(self._counts):
            if count:
                self._child._buckets[index].inc(count)
                self._counts[index] = 0
        self._child._sum.inc(self._total)
        self._total = 0.0


@dataclass
class Observation:
    model: str
    version: str
    arm: str
    code: int
    total_ms: float
    validation_ms: float = 0.0
    queue_ms: float = 0.0
    compute_ms: float = 0.0
    batch_size: int = 0
    stages: list[tuple[str, float]] | None = None  # a pipeline's stages: (name, ms); compute is their sum
    cache: str = ""  # the response cache's answer: hit or miss; empty when the version has none
    fallback: str = ""  # which fallback answered (cache, version, human_review); empty when none did
    fallback_reason: str = ""  # the failure that triggered it: timeout, model_error, overload

    @property
    def computed(self) -> bool:
        """Whether this series' version ran the request: its queue, compute and batch figures count."""
        return self.code == 200 and self.cache != "hit" and not self.fallback


class Recorder:
    def __init__(self, client: aioredis.Redis, keys: RedisKeys, enabled: bool = True) -> None:
        self._redis = client
        self._keys = keys
        self.enabled = enabled
        self._pending: dict[tuple[int, str, str, str], defaultdict[str, int]] = {}
        self._children: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        self._counts: dict[tuple[str, str, str, int], int] = {}  # requests not yet added to the counter
        self._served: dict[tuple[Any, ...], int] = {}  # cache look-ups and fallbacks not yet added to theirs
        self._stage_children: dict[tuple[str, str, str, str], BulkHistogram] = {}
        self._task: asyncio.Task[None] | None = None

    def _labelled(self, model: str, version: str, arm: str) -> tuple[Any, ...]:
        # labels() costs a lock and a dict look-up; the children are cached per series.
        key = (model, version, arm)
        children = self._children.get(key)
        if children is None:
            stage = metrics.STAGE_SECONDS
            children = (
                BulkHistogram(stage.labels(model, version, arm, "validation")),
                BulkHistogram(stage.labels(model, version, arm, "queue")),
                BulkHistogram(stage.labels(model, version, arm, "compute")),
                BulkHistogram(stage.labels(model, version, arm, "total")),
                BulkHistogram(metrics.BATCH_SIZE.labels(model, version)),
            )
            self._children[key] = children
        return children

    def record(self, obs: Observation) -> None:
        if not self.enabled:
            return
        counter_key = (obs.model, obs.version, obs.arm, obs.code)
        self._counts[counter_key] = self._counts.get(counter_key, 0) + 1
        validation, queue, compute, total, batch = self._labelled(obs.model, obs.version, obs.arm)
        total.observe(obs.total_ms / 1000)
        validation.observe(obs.validation_ms / 1000)
        computed = obs.computed
        timed = stages.kept(obs.stages) if computed and obs.stages else []
        if computed:
            queue.observe(obs.queue_ms / 1000)
            compute.observe(obs.compute_ms / 1000)
            batch.observe(obs.batch_size)
            if timed:
                self._record_stages(obs, timed)
        minute = int(time.time() // 60) * 60
        fields = self._pending.get((minute, obs.model, obs.version, obs.arm))
        if fields is None:
            fields = self._pending[(minute, obs.model, obs.version, obs.arm)] = defaultdict(int)
        fields["n"] += 1
        fields[f"c:{obs.code}"] += 1
        fields[f"l:{sketch.bucket(obs.total_ms)}"] += 1
        if computed:
            fields[f"b:{obs.batch_size}"] += 1
            fields["qus"] += int(obs.queue_ms * 1000)
            fields["cus"] += int(obs.compute_ms * 1000)
            fields["csus"] += int(obs.compute_ms * 1000 / max(1, obs.batch_size))
            if timed:
                stages.add_fields(fields, timed, obs.compute_ms)
        if obs.cache or obs.fallback:
            self._record_served(obs, fields)
        self._ensure_flusher()

    def _record_served(self, obs: Observation, fields: defaultdict[str, int]) -> None:
        if obs.cache:
            fields[f"d:{obs.cache}"] += 1
            key: tuple[Any, ...] = ("cache", obs.model, obs.version, obs.cache)
            self._served[key] = self._served.get(key, 0) + 1
        if obs.fallback:
            fields[f"d:fb:{obs.fallback}"] += 1
            fields[f"d:fr:{obs.fallback_reason}"] += 1
            key = ("fallback", obs.model, obs.version, obs.fallback, obs.fallback_reason)
            self._served[key] = self._served.get(key, 0) + 1

    def _record_stages(self, obs: Observation, timed: list[tuple[str, float]]) -> None:
        for stage, ms in timed:
            key = (obs.model, obs.version, obs.arm, stage)
            child = self._stage_children.get(key)
            if child is None:
                child = BulkHistogram(metrics.STAGE_SECONDS.labels(*key))
                self._stage_children[key] = child
            child.observe(ms / 1000)

    def record_agreement(self, model: str, version: str, agree: int, rows: int, max_diff: float | None) -> None:
        """A shadow's agreement with the champion: argmax matches per row, and the largest difference."""
        if not self.enabled:
            return
        minute = int(time.time() // 60) * 60
        fields = self._pending.get((minute, model, version, "shadow"))
        if fields is None:
            fields = self._pending[(minute, model, version, "shadow")] = defaultdict(int)
        fields["sa"] += agree
        fields["sr"] += rows
        if max_diff is not None:
            fields["sdn"] += 1
            fields["sdu"] += int(max_diff * 1e6)
        self._ensure_flusher()

    def reject(self, reason: str) -> None:
        if self.enabled:
            metrics.REJECTED.labels(reason).inc()

    def _ensure_flusher(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    def apply_metrics(self) -> None:
        """Add what was counted since the last flush to the Prometheus metrics."""
        counts, self._counts = self._counts, {}
        for (model, version, arm, code), count in counts.items():
            metrics.REQUESTS.labels(model, version, arm, str(code)).inc(count)
        served, self._served = self._served, {}
        for (kind, *labels), count in served.items():
            (metrics.CACHE_LOOKUPS if kind == "cache" else metrics.FALLBACKS).labels(*labels).inc(count)
        for children in self._children.values():
            for child in children:
                child.apply()
        for stage_child in self._stage_children.values():
            stage_child.apply()

    async def flush(self) -> None:
        self.apply_metrics()
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        pipe = self._redis.pipeline(transaction=False)
        for (minute, model, version, arm), fields in pending.items():
            key = self._keys.obs_minute(minute, model, version, arm)
            for name, value in fields.items():
                pipe.hincrby(key, name, value)
            pipe.expire(key, MINUTE_TTL_SECONDS)
            index = self._keys.obs_index(minute)
            pipe.sadd(index, key)
            pipe.expire(index, MINUTE_TTL_SECONDS)
        try:
            await pipe.execute()
        except (aioredis.RedisError, OSError):
            logger.warning("could not flush %d latency series to Redis; they are lost", len(pending))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
