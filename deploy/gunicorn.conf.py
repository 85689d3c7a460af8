"""gunicorn settings for Turnout's web process (used by the Procfile and the Docker image)."""

import os
import tempfile
from typing import Any

# gunicorn 27's control socket defaults to one path per user ($HOME/.gunicorn):
# two instances on a host (a benchmark beside `make run`, two containers sharing
# a home) would take each other's socket. One per master process instead.
control_socket = os.path.join(tempfile.gettempdir(), f"turnout-gunicorn-{os.getpid()}.ctl")


def child_exit(server: Any, worker: Any) -> None:
    """A dead web worker's live Prometheus gauges are removed."""
    # The master never loads the application; the settings say where the samples are.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    from django.conf import settings
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, path=str(settings.PROMETHEUS_MULTIPROC_DIR))
