"""Beat's periodic work on the latency figures (schedule: CELERY_BEAT_SCHEDULE in settings).

No retries: each task runs again at the next tick, and the rollups are safe to
repeat or to overlap (rollup.py).
"""

from __future__ import annotations

from celery import shared_task

from observability import rollup


# The workers' thread pool enforces no time limit (controlplane/budget.py): each task
# stops itself within its budget, well inside its schedule's period, and every
# statement is bounded by TURNOUT_TASK_STATEMENT_TIMEOUT_SECONDS. The limits below
# apply only if someone runs these tasks in a prefork pool.
@shared_task(name="observability.roll_up_minutes", ignore_result=True, soft_time_limit=50, time_limit=60)
def roll_up_minutes() -> int:
    """Move finished minutes from Redis into PostgreSQL (every 30 s; budget 20 s)."""
    return rollup.roll_up_minutes(budget_s=20)


@shared_task(name="observability.roll_up_hours", ignore_result=True, soft_time_limit=240, time_limit=270)
def roll_up_hours() -> int:
    """Merge the minutes of complete hours into hour rows (every 10 min; budget 120 s)."""
    return rollup.roll_up_hours(budget_s=120)


@shared_task(name="observability.prune", ignore_result=True, soft_time_limit=600, time_limit=660)
def prune() -> tuple[int, int]:
    """Delete minute and hour rows past their retention (hourly; budget 300 s)."""
    return rollup.prune(budget_s=300)
