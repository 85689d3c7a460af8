"""The one Celery app. `celery -A controlplane worker` and `... beat` use it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _install_worker_steps(celery_app: Celery) -> None:
    # Imported lazily: the bootstep module touches Redis settings, which need Django configured.
    from workers.bootsteps import HeartbeatStep, ServingStep

    celery_app.steps["worker"].add(ServingStep)
    celery_app.steps["worker"].add(HeartbeatStep)


_install_worker_steps(app)
