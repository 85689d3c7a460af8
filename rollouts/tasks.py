from __future__ import annotations

from celery import shared_task

from rollouts.analysis import run_due_analyses, update_experiment_p_values


@shared_task(name="rollouts.analyze", ignore_result=True, soft_time_limit=50, time_limit=60)
def analyze() -> int:
    """Analyse the running canaries that are due (advance, promote or roll back), and keep
    every running experiment's always-valid p-values; the number of canaries analysed."""
    update_experiment_p_values()
    return run_due_analyses()
