"""The one Celery app. `celery -A controlplane worker` and `... beat` use it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# By name: Celery imports them when a worker starts, so web and beat processes, which
# import this app too, never import the workers' code (or onnxruntime through it).
app.steps["worker"].add("workers.bootsteps:ServingStep")
app.steps["worker"].add("workers.bootsteps:HeartbeatStep")
