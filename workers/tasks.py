"""Control tasks for the serving side of workers.

Sent to the `turnout_control` broadcast queue, so every worker runs them, in
its own thread pool, against its own session pool (workers/serving.py).
"""

from __future__ import annotations

import logging

from celery import shared_task

from dataplane import control
from workers import serving
from workers.runtime import warm_up

logger = logging.getLogger(__name__)


def _serving() -> serving.Serving | None:
    if serving.current is None:
        logger.warning("control task ignored: this process runs no serving loops (start it with --pool threads)")
    return serving.current


@shared_task(name=control.LOAD_VERSION, ignore_result=True)
def load_version(version_id: int) -> str:
    """Load (and warm up) a version now instead of on its first request."""
    current = _serving()
    if current is None:
        return "no serving loops in this process"
    current.refresh_now()
    loaded = current.load(version_id)
    return f"loaded on {loaded.provider}" if loaded else "not served by this worker"


@shared_task(name=control.UNLOAD_VERSION, ignore_result=True)
def unload_version(version_id: int) -> str:
    current = _serving()
    if current is None:
        return "no serving loops in this process"
    return "unloaded" if current.unload(version_id) else "was not loaded"


@shared_task(name=control.WARMUP_VERSION, ignore_result=True)
def warmup_version(version_id: int) -> str:
    """Run warm-up inferences (loading first if needed)."""
    current = _serving()
    if current is None:
        return "no serving loops in this process"
    loaded = current.load(version_id)
    if loaded is None:
        return "not served by this worker"
    warm_up(loaded, current.consumers[version_id].version.signature)
    return "warmed up"
