"""gunicorn settings that need code: a dead web worker's live Prometheus gauges are removed."""

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
