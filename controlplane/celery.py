"""The one Celery app. `celery -A controlplane worker` and `... beat` use it."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init
from django.conf import settings
from django.db.backends.signals import connection_created

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# By name: Celery imports them when a worker starts, so web and beat processes, which
# import this app too, never import the workers' code (or onnxruntime through it).
app.steps["worker"].add("workers.bootsteps:ServingStep")
app.steps["worker"].add("workers.bootsteps:HeartbeatStep")


def bound_statements(**_: Any) -> None:
    """Every database statement of a worker or beat process ends within
    TURNOUT_TASK_STATEMENT_TIMEOUT_SECONDS: the thread pool enforces no task time
    limit, and a stuck query must not hold a thread forever (controlplane/budget.py)."""

    connection_created.connect(_set_statement_timeout, dispatch_uid="turnout-statement-timeout")


def _set_statement_timeout(sender: Any, connection: Any, **_: Any) -> None:

    seconds = float(settings.TURNOUT["TASK_STATEMENT_TIMEOUT_SECONDS"])
    if connection.vendor == "postgresql" and seconds > 0:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{int(seconds * 1000)}ms"])


worker_init.connect(bound_statements)
beat_init.connect(bound_statements)
