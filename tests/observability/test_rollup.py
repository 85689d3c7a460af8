"""Moving minutes from Redis to PostgreSQL, merging hours, pruning: exactly once,
whatever the overlap of runs or where one of them stopped."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from dataplane.keys import RedisKeys
from observability import rollup, sketch
from observability.models import HourStats, MinuteStats
from tests.support.figures import MODEL, claim, minute_of, observations

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)


def prefix() -> str:
    return str(settings.TURNOUT["REDIS_PREFIX"])


def row_for(start: dt.datetime, version: str = "1", arm: str = "champion") -> MinuteStats:
    return MinuteStats.objects.get(model=MODEL, version=version, arm=arm, start=start.replace(second=0, microsecond=0))


def histogram_of(values: list[float]) -> dict[str, int]:
    return {str(k): v for k, v in Counter(sketch.bucket(v) for v in values).items()}


def test_only_minutes_older_than_the_previous_one_move(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    old = inject(observations(200, seed=1, error_share=0.1), now - 5 * MINUTE)
    inject(observations(50, seed=2), now - MINUTE)
    inject(observations(50, seed=3), now)

    moved = rollup.roll_up_minutes(now)

    assert moved == 1
    row = row_for(now - 5 * MINUTE)
    assert row.requests == 200
    assert row.latency == histogram_of([o.total_ms for o in old])
    assert row.codes == {str(k): v for k, v in Counter(o.code for o in old).items()}
    ok = [o for o in old if o.code == 200]
    assert row.batch_sizes == {str(k): v for k, v in Counter(o.batch_size for o in ok).items()}
    assert row.queue_us == sum(int(o.queue_ms * 1000) for o in ok)
    assert row.in_hour is False
    assert not redis_client.exists(RedisKeys(prefix()).obs_minute(minute_of(now - 5 * MINUTE), MODEL, "1", "champion"))
    assert not redis_client.exists(RedisKeys(prefix()).obs_index(minute_of(now - 5 * MINUTE)))
    for live in (now - MINUTE, now):
        assert redis_client.exists(RedisKeys(prefix()).obs_minute(minute_of(live), MODEL, "1", "champion"))
    assert MinuteStats.objects.count() == 1


def test_running_twice_changes_nothing(inject: Callable[..., Any], now: dt.datetime) -> None:
    inject(observations(100, seed=1), now - 3 * MINUTE)
    inject(observations(100, seed=2, version="2", arm="canary"), now - 3 * MINUTE)

    first = rollup.roll_up_minutes(now)
    before = list(MinuteStats.objects.values("model", "version", "arm", "requests", "latency", "codes"))
    second = rollup.roll_up_minutes(now)

    assert (first, second) == (2, 0)
    assert list(MinuteStats.objects.values("model", "version", "arm", "requests", "latency", "codes")) == before


def test_a_late_flush_adds_to_the_minute_already_moved(inject: Callable[..., Any], now: dt.datetime) -> None:
    first = inject(observations(100, seed=1), now - 4 * MINUTE)
    rollup.roll_up_minutes(now)
    MinuteStats.objects.update(in_hour=True)
    late = inject(observations(30, seed=2), now - 4 * MINUTE)

    rollup.roll_up_minutes(now)

    row = row_for(now - 4 * MINUTE)
    assert row.requests == 130
    assert row.latency == histogram_of([o.total_ms for o in first + late])
    assert row.in_hour is False  # its hour is recomputed
    assert len(row.claims) == 2


def test_a_run_overlapping_another_moves_each_hash_once(
    inject: Callable[..., Any], now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for minutes_ago in (2, 3, 4, 5):
        inject(observations(40, seed=minutes_ago), now - minutes_ago * MINUTE)
    real_apply = rollup.apply_claim
    overlapping: list[int] = []

    def apply_with_a_second_run_meanwhile(*args: Any) -> bool:
        # The second run starts while the first holds a claim it has not applied yet.
        if not overlapping:
            overlapping.append(-1)
            overlapping[0] = rollup.roll_up_minutes(now)
        return real_apply(*args)

    monkeypatch.setattr(rollup, "apply_claim", apply_with_a_second_run_meanwhile)
    first = rollup.roll_up_minutes(now)

    assert first + overlapping[0] == 4
    assert overlapping[0] == 3  # all but the hash the first run held
    assert MinuteStats.objects.count() == 4
    assert sum(MinuteStats.objects.values_list("requests", flat=True)) == 160


def test_a_claim_left_by_a_run_that_died_before_its_commit_is_applied_later(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    inject(observations(60, seed=1), now - 3 * MINUTE)
    _, key = claim(redis_client, now - 3 * MINUTE, now)

    assert rollup.roll_up_minutes(now) == 0  # fresh: its run may still be working on it
    assert redis_client.exists(key)
    assert rollup.roll_up_minutes(now + 10 * MINUTE) == 1

    assert row_for(now - 3 * MINUTE).requests == 60
    assert not redis_client.exists(key)
    assert not redis_client.smembers(RedisKeys(prefix()).obs_index(minute_of(now - 3 * MINUTE)))


def test_a_claim_left_by_a_run_that_died_after_its_commit_is_not_added_twice(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    inject(observations(60, seed=1), now - 3 * MINUTE)
    series, key = claim(redis_client, now - 3 * MINUTE, now)
    assert rollup.apply_claim(series, rollup.Counts.from_hash(redis_client.hgetall(key)), now.timestamp())

    assert rollup.roll_up_minutes(now + 10 * MINUTE) == 0

    assert row_for(now - 3 * MINUTE).requests == 60
    assert not redis_client.exists(key)


def test_hours_merge_once_complete_and_again_after_a_late_minute(inject: Callable[..., Any], now: dt.datetime) -> None:
    # Half past an hour that has begun, whatever the clock says: three minutes
    # earlier is then still in that hour, which is not complete.
    now = now.replace(minute=30) - dt.timedelta(hours=1)
    hour = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    values = []
    for minute in (0, 17, 59):
        values += inject(observations(50, seed=minute), hour + minute * MINUTE)
    inject(observations(10, seed=99), now - 3 * MINUTE)  # the current hour: not complete
    rollup.roll_up_minutes(now)

    assert rollup.roll_up_hours(now) == 1
    assert rollup.roll_up_hours(now) == 0
    merged = HourStats.objects.get()
    assert (merged.start, merged.requests) == (hour, 150)
    assert merged.latency == histogram_of([o.total_ms for o in values])
    assert not MinuteStats.objects.filter(start__lt=hour + dt.timedelta(hours=1), in_hour=False).exists()

    values += inject(observations(25, seed=7), hour + 30 * MINUTE)
    rollup.roll_up_minutes(now)
    assert rollup.roll_up_hours(now) == 1

    merged.refresh_from_db()
    assert merged.requests == 175
    assert merged.latency == histogram_of([o.total_ms for o in values])
    assert HourStats.objects.count() == 1


def test_prune_keeps_what_retention_says(settings: Any, now: dt.datetime) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "METRICS_MINUTE_RETENTION_DAYS": 2, "METRICS_HOUR_RETENTION_DAYS": 10}
    for days in (1, 3):
        MinuteStats.objects.create(model=MODEL, version="1", arm="champion", start=now - dt.timedelta(days=days))
    for days in (3, 11):
        HourStats.objects.create(model=MODEL, version="1", arm="champion", start=now - dt.timedelta(days=days))

    assert rollup.prune(now) == (1, 1)

    assert list(MinuteStats.objects.values_list("start", flat=True)) == [now - dt.timedelta(days=1)]
    assert list(HourStats.objects.values_list("start", flat=True)) == [now - dt.timedelta(days=3)]


@pytest.mark.django_db(transaction=True)
def test_runs_in_parallel_threads_count_every_request_once(inject: Callable[..., Any], now: dt.datetime) -> None:
    for minutes_ago in range(2, 32):
        inject(observations(20, seed=minutes_ago), now - minutes_ago * MINUTE)
        inject(observations(5, seed=minutes_ago, version="2"), now - minutes_ago * MINUTE)
    moved: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            moved.append(rollup.roll_up_minutes(now))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not errors
    assert sum(moved) == 60
    assert MinuteStats.objects.count() == 60
    assert sum(MinuteStats.objects.values_list("requests", flat=True)) == 30 * 25


def test_beat_runs_the_three_tasks_by_name(settings: Any, inject: Callable[..., Any]) -> None:
    from observability import tasks

    scheduled = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    inject(observations(10, seed=1), dt.datetime.now(dt.UTC) - 5 * MINUTE)

    assert scheduled["observability.roll_up_minutes"] == 30.0
    assert scheduled["observability.roll_up_hours"] == 600.0
    assert scheduled["observability.prune"] == 3600.0
    assert tasks.roll_up_minutes.apply().get() == 1
    assert tasks.roll_up_hours.apply().get() in (0, 1)  # 1 when five minutes ago was in the previous hour
    assert tasks.prune.apply().get() == (0, 0)
    assert MinuteStats.objects.get().requests == 10
