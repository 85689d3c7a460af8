from __future__ import annotations

from celery import shared_task

from rollouts.analysis import run_due_analyses


@shared_task(name="rollouts.analyze", ignore_result=True, soft_time_limit=50, time_limit=60)
def analyze() -> int:
    """Analyse the running canaries that are due: advance, promote or roll back."""
    return run_due_analyses()
