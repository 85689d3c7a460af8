"""The serving side of a worker process: which versions it serves, their
batching loops, and the pool of loaded sessions.

Runs inside `celery -A controlplane worker` as a bootstep (workers/bootsteps.py),
in the worker's main process. Three threads besides the loops: one reconciles
the served versions with the registry (every 2 s, and at once on a change
notice), one listens for those notices, and one follows the control stream
(dataplane/control.py) to load or unload a version when a maintainer asks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from typing import Any, cast

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from controlplane.redis_client import new_redis, redis_keys
from dataplane import control
from dataplane.liveness import NOT_LOADED
from observability import metrics
from registry import inference_memory
from registry.signature import Signature
from registry.storage import local_copy
from workers.consumer import ServedVersion, VersionConsumer
from workers.pipeline import LoadedPipeline, wiring_of
from workers.runtime import LoadedSession, SessionPool, sample_inputs, warm_up
from workers.served import ready_versions

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
CONTROL_BLOCK_MS = 1000


class Serving:
    def __init__(self, worker_name: str) -> None:
        conf = settings.TURNOUT
        self.worker_name = worker_name
        self.keys = redis_keys()
        self.patterns = list(conf["WORKER_MODELS"])
        self.reclaim_idle_ms = int(conf["WORKER_RECLAIM_IDLE_MS"])
        self.redis = new_redis(health_check_interval=30)
        # Before any session exists: sessions take the capped arena when they are created.
        inference_memory.cap(int(conf["WORKER_RUN_MEMORY_BYTES"]))
        self.pool = SessionPool(int(conf["WORKER_MEMORY_BUDGET_BYTES"]), int(conf["WORKER_INTRA_OP_THREADS"]))
        self.pool.on_change = self._on_pool_change
        self.consumers: dict[int, VersionConsumer] = {}
        self._providers: dict[int, str] = {}
        # Pipelines whose stages are all loaded; dropped when a stage leaves the pool.
        self._pipelines: dict[int, LoadedPipeline] = {}
        self._pipelines_lock = threading.Lock()
        self.batches = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The manage thread reconciles on its schedule, the control thread when a
        # command names a version it does not serve yet: one at a time.
        self._reconciling = threading.Lock()

    # --- lifecycle -------------------------------------------------------
    def start(self) -> None:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers() and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu[cuda,cudnn] ships CUDA and cuDNN as wheels; load them
            # before the first session so the CUDA provider finds them.
            ort.preload_dlls()
        self._stop.clear()
        threads = (
            (self._manage, "turnout-serving"),
            (self._listen, "turnout-catalog"),
            (self._follow_commands, "turnout-control"),
        )
        for target, name in threads:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("worker %s serves models matching %s", self.worker_name, self.patterns)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for consumer in list(self.consumers.values()):
            consumer.stop()
        for consumer in list(self.consumers.values()):
            consumer.join(timeout=5)
        for version_id in list(self.consumers):
            self._forget(version_id)
        self.consumers.clear()

    def refresh_now(self) -> None:
        self._wake.set()

    # --- sessions --------------------------------------------------------
    def get_session(self, version: ServedVersion) -> LoadedSession | LoadedPipeline:
        if version.is_pipeline:
            return self._get_pipeline(version)
        return self._get_model(version)

    def _get_pipeline(self, version: ServedVersion) -> LoadedPipeline:
        pipeline = self._pipelines.get(version.id)
        if pipeline is not None:
            for stage_id in pipeline.stage_version_ids:
                self.pool.get(stage_id)  # keeps the stages recently used in the pool's eyes
            return pipeline
        sessions = {}
        for stage in version.stages:
            loaded = self.pool.get(stage.version_id)
            if loaded is None:
                loaded = self.pool.load(
                    stage.version_id,
                    # Bound now: the lambda runs inside load, while `stage` is this one.
                    lambda artifact=stage.artifact: local_copy(artifact),  # type: ignore[misc]
                    stage.signature,
                    stage.execution_provider,
                    stage.intra_op_threads,
                )
                metrics.LOAD_SECONDS.labels(version.model, str(version.number), loaded.provider).observe(
                    loaded.load_seconds
                )
            sessions[stage.name] = loaded
        pipeline = LoadedPipeline(
            version.id,
            wiring_of(version.stages, version.pipeline_outputs, cast(Signature, version.signature)),
            sessions,
        )
        for batch in (1, 2) if version.signature.get("batch_dim") else (1,):
            pipeline.warm_up(sample_inputs(version.signature, batch))
        with self._pipelines_lock:
            self._pipelines[version.id] = pipeline
        self._on_pool_change(version.id, pipeline)
        return pipeline

    def _get_model(self, version: ServedVersion) -> LoadedSession:
        loaded = self.pool.get(version.id)
        if loaded is not None:
            return loaded
        loaded = self.pool.load(
            version.id,
            lambda: local_copy(version.artifact),
            version.signature,
            version.execution_provider,
            version.intra_op_threads,
        )
        warm_up(loaded, version.signature)
        metrics.LOAD_SECONDS.labels(version.model, str(version.number), loaded.provider).observe(loaded.load_seconds)
        return loaded

    def load(self, version_id: int) -> LoadedSession | LoadedPipeline | None:
        consumer = self.consumers.get(version_id)
        return self.get_session(consumer.version) if consumer else None

    def unload(self, version_id: int) -> bool:
        with self._pipelines_lock:
            pipeline = self._pipelines.pop(version_id, None)
        if pipeline is None:
            return self.pool.unload(version_id)
        # Its stages go too, unless this worker serves them on their own or in another pipeline.
        with self._pipelines_lock:
            kept = {vid for other in self._pipelines.values() for vid in other.stage_version_ids}
        for stage_id in pipeline.stage_version_ids - kept - set(self.consumers):
            self.pool.unload(stage_id)
        self._on_pool_change(version_id, None)
        return True

    def describe(self) -> dict[str, Any]:
        """For the heartbeat thread, while the others add and remove versions: it reads copies."""
        with self._pipelines_lock:
            pipelines = dict(self._pipelines)
        loaded: dict[int, LoadedSession | LoadedPipeline] = {**self.pool.loaded(), **pipelines}
        consumers = list(self.consumers.items())  # one C-level copy: no thread runs in between
        return {
            "serving": {
                str(vid): {
                    "model": c.version.model,
                    "version": c.version.number,
                    "provider": loaded[vid].provider if vid in loaded else None,
                }
                for vid, c in consumers
            },
            "memory_bytes": self.pool.memory_bytes(),
            "batches": self.batches,
        }

    # --- internals -------------------------------------------------------
    def _on_pool_change(self, version_id: int, loaded: LoadedSession | LoadedPipeline | None) -> None:
        if loaded is None:
            # A stage that leaves the pool takes the pipelines that run it along.
            with self._pipelines_lock:
                gone = [pid for pid, p in self._pipelines.items() if version_id in p.stage_version_ids]
                for pid in gone:
                    del self._pipelines[pid]
            for pid in gone:
                self._on_pool_change(pid, None)
        consumer = self.consumers.get(version_id)
        if consumer is not None:
            labels = (consumer.version.model, str(consumer.version.number))
            if loaded is not None:
                metrics.LOADED.labels(*labels, loaded.provider).set(1)
                self._providers[version_id] = loaded.provider
            elif version_id in self._providers:
                metrics.LOADED.labels(*labels, self._providers.pop(version_id)).set(0)
        if version_id in self.consumers:
            value = loaded.provider if loaded else NOT_LOADED
            try:
                self.redis.hset(self.keys.served_by(version_id), self.worker_name, value)
            except redis.RedisError:
                logger.warning("could not record version %s as %s", version_id, value)

    def _count_batch(self, version: ServedVersion, size: int) -> None:
        self.batches += 1
        metrics.BATCHES.labels(version.model, str(version.number)).observe(size)

    def _manage(self) -> None:
        while not self._stop.is_set():
            try:
                self._reconcile()
            except (DatabaseError, redis.RedisError):
                logger.warning("cannot refresh the served versions; retrying", exc_info=True)
            except Exception:
                # Whatever one refresh hit, the next one runs: a worker that stops
                # reconciling never loads another version.
                logger.exception("unexpected error while refreshing the served versions; retrying")
            self._wake.wait(REFRESH_SECONDS)
            self._wake.clear()

    def _reconcile(self) -> None:
        with self._reconciling:
            self._reconcile_locked()

    def _reconcile_locked(self) -> None:
        close_old_connections()
        wanted = {v.id: v for v in ready_versions(self.patterns) if v.signature}
        for version_id, consumer in list(self.consumers.items()):
            update = wanted.get(version_id)
            if update is not None and update == dataclasses.replace(consumer.version, production=update.production):
                if update != consumer.version:
                    # Only the production alias moved: the loop goes on, and the new
                    # production version loads now, beside it, instead of on a request.
                    consumer.version = update
                    if update.production:
                        self._preload(update)
                continue
            if update != consumer.version:
                consumer.stop()
                consumer.join(timeout=5)
                del self.consumers[version_id]
                if update is None or update.session_options != consumer.version.session_options:
                    self.unload(version_id)
                if update is None:
                    self._forget(version_id)
        for version_id, version in wanted.items():
            if version_id in self.consumers or self._stop.is_set():
                continue
            consumer = VersionConsumer(
                version,
                self.redis,
                self.keys,
                self.worker_name,
                self.get_session,
                self.reclaim_idle_ms,
                on_batch=self._count_batch,
            )
            self.consumers[version_id] = consumer
            loaded = self._pipelines.get(version_id) or self.pool.get(version_id)
            self.redis.hset(
                self.keys.served_by(version_id), self.worker_name, loaded.provider if loaded else NOT_LOADED
            )
            consumer.start()
            logger.info("serving %s", version.label)

    def _preload(self, version: ServedVersion) -> None:
        def load() -> None:
            try:
                self.get_session(version)
            except Exception:
                logger.exception("%s: preloading the production version failed; it loads on first use", version.label)

        threading.Thread(target=load, name=f"turnout-preload-{version.id}", daemon=True).start()

    def _forget(self, version_id: int) -> None:
        with contextlib.suppress(redis.RedisError):
            self.redis.hdel(self.keys.served_by(version_id), self.worker_name)

    def _follow_commands(self) -> None:
        """Obey the control stream, from its end when this worker started."""
        after: str | None = None
        while not self._stop.is_set():
            try:
                if after is None:
                    after = control.last_id(self.redis, self.keys)
                for command in control.read(self.redis, self.keys, after, CONTROL_BLOCK_MS):
                    after = command.entry_id
                    self._obey(command)
            except redis.RedisError:
                logger.warning("cannot read the control stream; retrying in 1 s", exc_info=True)
                self._stop.wait(1.0)
            except Exception:
                # The thread must outlive one bad command; the entry is behind it already.
                logger.exception("unexpected error while obeying the control stream")
                self._stop.wait(1.0)

    def _obey(self, command: control.Command) -> None:
        version_id = command.version_id
        if command.action == control.UNLOAD:
            freed = self.unload(version_id)
            logger.info("version %s %s on request", version_id, "unloaded" if freed else "was not loaded")
            return
        if command.action != control.LOAD:
            logger.warning("ignoring a malformed control entry %s", command.entry_id)
            return
        if version_id not in self.consumers:
            # Loaded right after validation or a change: this worker may not have
            # picked the version up yet.
            try:
                self._reconcile()
            except (DatabaseError, redis.RedisError):
                logger.warning("cannot refresh the served versions before a load", exc_info=True)
            finally:
                connection.close()  # this thread reconciles rarely: no idle connection in between
        try:
            loaded = self.load(version_id)
        except Exception:
            logger.exception("version %s could not be loaded on request", version_id)
            return
        if loaded is None:
            logger.info("version %s: load ignored, this worker does not serve it", version_id)
        else:
            logger.info("version %s loaded on request (%s)", version_id, loaded.provider)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.keys.catalog_channel())
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=1.0):
                        self._wake.set()
                pubsub.close()
            except redis.RedisError:
                self._stop.wait(1.0)
            except Exception:
                # Notices only hurry the refresh along; they must not end on a bug.
                logger.exception("unexpected error while listening for change notices; retrying in 1 s")
                self._stop.wait(1.0)


# The one Serving of this process, set by the bootstep; control tasks use it.
current: Serving | None = None
