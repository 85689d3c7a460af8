"""Periodic tasks bound themselves: Celery's thread pool enforces no time limit, so the
rollups stop at a safe point once their budget is spent (the next run goes on), and every
statement of a worker or beat process has a timeout."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.db import OperationalError, connection
from django.db.backends.signals import connection_created

from controlplane.celery import bound_statements
from observability import rollup
from observability.models import HourStats, MinuteStats
from tests.support.figures import MODEL, observations

pytestmark = pytest.mark.django_db


def test_a_minute_rollup_out_of_budget_stops_and_the_next_run_moves_the_rest(
    inject: Callable[..., Any], now: dt.datetime, redis_client: redis.Redis
) -> None:
    for model in ("a", "b", "c"):
        inject(observations(20, model=f"{MODEL}-{model}"), now - dt.timedelta(minutes=5))

    stopped = rollup.roll_up_minutes(now, budget_s=0)

    assert stopped == 0
    assert not MinuteStats.objects.exists()
    assert rollup.roll_up_minutes(now, budget_s=60) == 3
    assert MinuteStats.objects.count() == 3


def test_pruning_goes_in_batches_and_stops_within_its_budget(now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    old = now - dt.timedelta(days=400)
    MinuteStats.objects.bulk_create(
        MinuteStats(model=MODEL, version="1", arm="champion", start=old + dt.timedelta(minutes=i)) for i in range(7)
    )
    HourStats.objects.create(model=MODEL, version="1", arm="champion", start=old)
    monkeypatch.setattr(rollup, "PRUNE_BATCH", 3)

    assert rollup.prune(now, budget_s=0) == (0, 0)
    assert MinuteStats.objects.count() == 7
    assert rollup.prune(now, budget_s=60) == (7, 1)
    assert not MinuteStats.objects.exists()
    assert not HourStats.objects.exists()


@pytest.fixture
def bounded(settings: Any) -> Iterator[None]:
    settings.TURNOUT = {**settings.TURNOUT, "TASK_STATEMENT_TIMEOUT_SECONDS": 0.2}
    bound_statements()  # what worker_init and beat_init do in a worker or beat process
    connection.close()  # the next query opens a connection of a worker's kind
    yield
    connection_created.disconnect(dispatch_uid="turnout-statement-timeout")
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_worker_or_beat_statement_is_cancelled_at_its_timeout(bounded: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("200ms",)
        with pytest.raises(OperationalError, match="statement timeout"):
            cursor.execute("SELECT pg_sleep(2)")
