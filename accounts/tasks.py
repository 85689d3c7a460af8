from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(name="accounts.flush_last_used", ignore_result=True, soft_time_limit=50, time_limit=60)
def flush_last_used() -> int:
    """Copy the gateway's last-use times of keys from Redis to PostgreSQL."""
    return services.flush_last_used()
