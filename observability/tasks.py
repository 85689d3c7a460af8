"""Beat's periodic work on the latency figures (schedule: CELERY_BEAT_SCHEDULE in settings).

No retries: each task runs again at the next tick, and the rollups are safe to
repeat or to overlap (rollup.py).
"""

from __future__ import annotations

from celery import shared_task

from observability import rollup


@shared_task(name="observability.roll_up_minutes", ignore_result=True, soft_time_limit=50, time_limit=60)
def roll_up_minutes() -> int:
    """Move finished minutes from Redis into PostgreSQL."""
    return rollup.roll_up_minutes()


@shared_task(name="observability.roll_up_hours", ignore_result=True, soft_time_limit=240, time_limit=270)
def roll_up_hours() -> int:
    """Merge the minutes of complete hours into hour rows."""
    return rollup.roll_up_hours()


@shared_task(name="observability.prune", ignore_result=True, soft_time_limit=600, time_limit=660)
def prune() -> tuple[int, int]:
    """Delete minute and hour rows past their retention."""
    return rollup.prune()
