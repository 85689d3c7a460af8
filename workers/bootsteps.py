"""Celery worker bootsteps: what `celery -A controlplane worker` runs beside its tasks."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import redis
from celery import bootsteps
from django.conf import settings
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from controlplane.redis_client import new_redis, redis_keys
from dataplane.liveness import forget_worker, record_heartbeat
from observability import tracing
from observability.collectors import GpuCollector
from workers import serving

logger = logging.getLogger(__name__)


class ServingStep(bootsteps.StartStopStep):
    """Runs the batching loops of every version this worker serves (workers/serving.py)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.serving: serving.Serving | None = None

    def start(self, worker: Any) -> None:
        conf = settings.TURNOUT
        tracing.configure(
            tracing.WORKER_SERVICE,
            enabled=bool(conf["TRACING"]),
            ratio=float(conf["TRACING_SAMPLE_RATIO"]),
            endpoint=str(conf["TRACING_ENDPOINT"]),
        )
        self.serving = serving.Serving(worker.hostname)
        serving.current = self.serving
        self.serving.start()
        port = int(settings.TURNOUT["WORKER_METRICS_PORT"])
        if port:
            # Workers on their own host (or container) expose their own samples;
            # on a shared host the web process's /metrics already includes them.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(GpuCollector())
            start_http_server(port, registry=registry)
            logger.info("worker %s: Prometheus metrics on port %d", worker.hostname, port)

    def stop(self, worker: Any) -> None:
        if self.serving is not None:
            self.serving.stop()
            serving.current = None
        tracing.shutdown()  # the spans of the last requests go out before the process ends
        # Its live gauges (models loaded) must not outlive the process.
        multiprocess.mark_process_dead(os.getpid())


class HeartbeatStep(bootsteps.StartStopStep):
    """Publishes this worker's liveness, and what it serves, to Redis every few seconds.

    A plain thread rather than the worker's timer: the timer only fires while
    the worker's event loop turns, and a pool busy on a long task would look dead.
    """

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = ""

    def start(self, worker: Any) -> None:
        self._name = worker.hostname or f"celery@{socket.gethostname()}.{os.getpid()}"
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="turnout-heartbeat", daemon=True)
        self._thread.start()
        logger.info("worker %s: heartbeat every %.1fs", self._name, settings.TURNOUT["WORKER_HEARTBEAT_SECONDS"])

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            forget_worker(self._client(), redis_keys(), self._name)
        except redis.RedisError:
            logger.warning("worker %s: could not remove heartbeat on shutdown", self._name)

    def _client(self) -> redis.Redis:
        return new_redis(socket_timeout=2)

    def _run(self) -> None:
        client = self._client()
        interval = float(settings.TURNOUT["WORKER_HEARTBEAT_SECONDS"])
        ttl = float(settings.TURNOUT["WORKER_TTL_SECONDS"])
        keys = redis_keys()
        while not self._stop.is_set():
            info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
            try:
                if serving.current is not None:
                    info.update(serving.current.describe())
            except Exception:
                # The worker is alive whatever its description hit: a heartbeat that
                # stopped here would make every gateway count it dead.
                logger.exception("worker %s: could not describe what it serves; heartbeat without it", self._name)
            try:
                record_heartbeat(client, keys, self._name, info, ttl)
            except redis.RedisError as exc:
                logger.warning("worker %s: heartbeat failed: %s", self._name, exc)
            except Exception:
                logger.exception("worker %s: heartbeat failed", self._name)
            self._stop.wait(interval)
