"""Figures read at scrape time rather than counted: queue depth, live workers, GPUs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controlplane.redis_client import get_redis, redis_keys
from dataplane.liveness import alive_since
from dataplane.priority import LEVELS
from registry.models import ModelVersion, VersionStatus

logger = logging.getLogger(__name__)


class ServingCollector(Collector):
    """Queue depth per served version (stream length) and the number of live workers."""

    def collect(self) -> Iterator[Any]:
        client = get_redis()
        keys = redis_keys()
        ttl = float(settings.TURNOUT["WORKER_TTL_SECONDS"])
        depth = GaugeMetricFamily(
            "turnout_queue_depth", "Requests waiting or running per model version.", labels=["model", "version"]
        )
        workers = GaugeMetricFamily("turnout_workers_alive", "Workers with a fresh heartbeat.")
        try:
            versions = list(
                ModelVersion.objects.filter(status=VersionStatus.READY).values_list("id", "model__name", "number")
            )
            pipe = client.pipeline(transaction=False)
            for version_id, _, _ in versions:
                for stream in keys.request_streams(version_id):  # every priority level's
                    pipe.xlen(stream)
            pipe.zcount(keys.workers(), alive_since(ttl), "+inf")
            results = pipe.execute()
        except (DatabaseError, redis.RedisError):
            logger.warning("metrics: queue depth unavailable", exc_info=True)
            return
        levels = len(LEVELS)
        for i, (_, model, number) in enumerate(versions):
            depth.add_metric([model, str(number)], sum(results[i * levels : (i + 1) * levels]))
        workers.add_metric([], results[-1])
        yield depth
        yield workers


class GpuCollector(Collector):
    """GPU utilisation and memory through NVML, on hosts that have NVIDIA GPUs."""

    def __init__(self) -> None:
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception:
            self._nvml = None

    def collect(self) -> Iterator[Any]:
        if self._nvml is None:
            return
        nvml = self._nvml
        utilisation = GaugeMetricFamily("turnout_gpu_utilization_ratio", "GPU busy fraction.", labels=["gpu"])
        used = GaugeMetricFamily("turnout_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu"])
        total = GaugeMetricFamily("turnout_gpu_memory_total_bytes", "GPU memory in all.", labels=["gpu"])
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                utilisation.add_metric([str(index)], rates.gpu / 100)
                used.add_metric([str(index)], memory.used)
                total.add_metric([str(index)], memory.total)
        except Exception:
            logger.warning("metrics: NVML query failed", exc_info=True)
            return
        yield utilisation
        yield used
        yield total
