"""The dashboard's figures: percentiles within 2 % of the exact ones for windows
that span hour rows, minute rows and live Redis minutes, and no request counted
twice while a rollup is half-way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings

from dataplane.keys import RedisKeys
from dataplane.priority import NORMAL
from observability import queries, reports, rollup
from observability.models import HourStats, MinuteStats
from observability.sketch import exact_quantile
from tests.support.figures import MODEL, claim, minute_of, observations

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def assert_close(figures: queries.Figures, values: list[float]) -> None:
    assert figures.requests == len(values)
    for q, got in ((0.5, figures.p50), (0.95, figures.p95), (0.99, figures.p99)):
        exact = exact_quantile(values, q)
        assert got is not None
        assert abs(got - exact) / exact <= 0.02, f"p{int(q * 100)}: {got} vs exact {exact}"


def test_unknown_window_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown window '2h'"):
        queries.window("2h")


def test_an_empty_window_has_no_percentiles(redis_client: redis.Redis, now: dt.datetime) -> None:
    figures = queries.summary("1h", now=now)

    assert (figures.requests, figures.p50, figures.error_rate) == (0, None, None)
    assert len(queries.timeline("1h", now=now).x) == 60


@pytest.fixture
def history(inject: Callable[..., Any], now: dt.datetime) -> dict[str, list[float]]:
    """Requests in every kind of place: hour rows (two days ago, one hour made stale by a late
    minute), minute rows (five hours and twenty minutes ago) and Redis (the last two minutes)."""
    old_hour = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=2)
    places: dict[str, list[float]] = {"hours": [], "minutes": [], "live": [], "other": []}
    for i, offset in enumerate((0, 13, 59, 61, 119)):
        places["hours"] += [o.total_ms for o in inject(observations(300, seed=i), old_hour + offset * MINUTE)]
    rollup.roll_up_minutes(now)
    rollup.roll_up_hours(now)
    assert HourStats.objects.count() == 2
    # A late flush into an hour already merged: its hour row is stale until the next hour rollup.
    places["hours"] += [o.total_ms for o in inject(observations(200, seed=9), old_hour + 30 * MINUTE)]
    for i, at in enumerate((now - 5 * HOUR, now - 20 * MINUTE, now - 3 * MINUTE)):
        places["minutes"] += [o.total_ms for o in inject(observations(400, seed=20 + i), at)]
    rollup.roll_up_minutes(now)
    assert MinuteStats.objects.filter(in_hour=False, start__lt=old_hour + HOUR).exists()
    for i, at in enumerate((now - MINUTE, now)):
        places["live"] += [o.total_ms for o in inject(observations(500, seed=40 + i, error_share=0.2), at)]
    inject(observations(300, model="other", seed=50), now - 2 * MINUTE)
    places["other"] = [o.total_ms for o in observations(300, model="other", seed=50)]
    return places


def test_percentiles_over_a_week_match_the_exact_ones(history: dict[str, list[float]], now: dt.datetime) -> None:
    values = history["hours"] + history["minutes"] + history["live"]

    figures = queries.summary("7d", model=MODEL, now=now)

    assert_close(figures, values)


def test_percentiles_over_a_day_and_an_hour_match_the_exact_ones(
    history: dict[str, list[float]], now: dt.datetime
) -> None:
    last_20_minutes = history["minutes"][400:] + history["live"]

    assert_close(queries.summary("24h", model=MODEL, now=now), history["minutes"] + history["live"])
    assert_close(queries.summary("1h", model=MODEL, now=now), last_20_minutes)
    assert_close(queries.summary("5m", model=MODEL, now=now), history["minutes"][800:] + history["live"])
    assert_close(queries.summary("5m", now=now), history["minutes"][800:] + history["live"] + history["other"])


def test_the_week_still_matches_once_hours_are_merged_again(history: dict[str, list[float]], now: dt.datetime) -> None:
    rollup.roll_up_hours(now)
    assert not MinuteStats.objects.filter(in_hour=False, start__lt=now - dt.timedelta(days=1)).exists()
    # Minute rows of merged hours no longer matter to long windows: hour rows stand for them.
    MinuteStats.objects.filter(start__lt=now - dt.timedelta(days=1)).delete()

    assert_close(queries.summary("7d", model=MODEL, now=now), history["hours"] + history["minutes"] + history["live"])
    assert_close(queries.summary("30d", model=MODEL, now=now), history["hours"] + history["minutes"] + history["live"])


def test_error_rate_codes_and_batch_sizes(inject: Callable[..., Any], now: dt.datetime) -> None:
    sent = inject(observations(400, seed=3, error_share=0.25), now - 4 * MINUTE)
    sent += inject(observations(100, seed=4, error_share=0.25), now)
    rollup.roll_up_minutes(now)

    figures = queries.summary("5m", model=MODEL, now=now)

    errors = [o for o in sent if o.code != 200]
    assert figures.error_rate == pytest.approx(len(errors) / 500)
    assert sum(figures.errors.values()) == len(errors)
    assert set(figures.errors) == {o.code for o in errors}
    ok = [o for o in sent if o.code == 200]
    assert sum(figures.batch_sizes.values()) == len(ok)
    assert figures.mean_queue_ms == pytest.approx(sum(o.queue_ms for o in ok) / len(ok), rel=1e-3)
    assert figures.per_second == pytest.approx(500 / (4 * 60 + 30))


def test_timeline_has_one_point_per_minute_with_each_minutes_figures(
    inject: Callable[..., Any], now: dt.datetime
) -> None:
    early = inject(observations(300, seed=1), now - 10 * MINUTE)
    late = inject(observations(200, seed=2, error_share=0.5), now)
    rollup.roll_up_minutes(now)

    line = queries.timeline("1h", model=MODEL, now=now)

    assert len(line.x) == 60
    assert line.x[-1] == minute_of(now)
    early_point = line.x.index(minute_of(now - 10 * MINUTE))
    assert line.requests[early_point] == 300
    assert line.per_second[early_point] == pytest.approx(5.0)
    assert line.p99[early_point] == pytest.approx(exact_quantile([o.total_ms for o in early], 0.99), rel=0.02)
    assert line.per_second[-1] == pytest.approx(200 / 30, rel=1e-3)  # the current minute: 30 s so far
    assert sum(sum(counts) for counts in line.errors.values()) == sum(o.code != 200 for o in late)
    assert line.requests.count(0) == 58
    assert line.p50[0] is None


def test_a_week_has_one_point_per_hour(inject: Callable[..., Any], now: dt.datetime) -> None:
    inject(observations(100, seed=1), now - 2 * HOUR)
    inject(observations(100, seed=2), now)
    rollup.roll_up_minutes(now)

    line = queries.timeline("7d", model=MODEL, now=now)

    assert len(line.x) == 7 * 24
    assert line.x[1] - line.x[0] == 3600
    assert sum(line.requests) == 200


def test_a_claimed_hash_is_counted_once_before_and_after_its_commit(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    sent = inject(observations(300, seed=5), now - 3 * MINUTE)
    values = [o.total_ms for o in sent]
    prefix = str(settings.TURNOUT["REDIS_PREFIX"])
    series, key = claim(redis_client, now - 3 * MINUTE, now)
    assert not redis_client.exists(RedisKeys(prefix).obs_minute(minute_of(now - 3 * MINUTE), MODEL, "1", "champion"))
    assert_close(queries.summary("5m", model=MODEL, now=now), values)  # claimed, not yet in PostgreSQL

    rollup.apply_claim(series, rollup.Counts.from_hash(redis_client.hgetall(key)), now.timestamp())
    assert redis_client.exists(key)
    assert_close(queries.summary("5m", model=MODEL, now=now), values)  # in PostgreSQL, claim not yet deleted

    rollup.release_claim(redis_client, key, f"{prefix}:obs:index:{minute_of(now - 3 * MINUTE)}")
    assert_close(queries.summary("5m", model=MODEL, now=now), values)


def test_model_report_splits_versions_and_reads_queue_depth(
    inject: Callable[..., Any], register: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    from controlplane.redis_client import redis_keys

    version = register(MODEL)
    redis_client.xadd(redis_keys().request_stream(version.id, NORMAL), {"x": "1"})
    v1 = inject(observations(300, version="1", seed=1), now - 2 * MINUTE)
    v2 = inject(observations(100, version="2", arm="canary", seed=2), now)

    report = reports.model_report(MODEL, "1h", now=now)

    assert [v.version for v in report.versions] == ["2", "1"]
    latest, first = report.versions
    assert (latest.arms, latest.queue_depth, first.queue_depth) == (["canary"], None, 1)
    assert_close(first.figures, [o.total_ms for o in v1])
    assert_close(report.figures, [o.total_ms for o in v1 + v2])
    data = first.chart_data()
    assert sum(data["batch_sizes"]["counts"]) == 300
    assert len(data["timeline"]["x"]) == 60
    assert report.summary_json()["summary"]["requests"] == 400


def test_overview_lists_registered_models_without_traffic_too(
    inject: Callable[..., Any], register: Callable[..., Any], now: dt.datetime
) -> None:
    register("quiet", ready=False)
    inject(observations(120, seed=1), now - 2 * MINUTE)

    window, rows = reports.overview("1h", now=now)

    assert [(r.name, r.registered, r.figures.requests) for r in rows] == [(MODEL, False, 120), ("quiet", True, 0)]
    assert window.name == "1h"
    assert len(rows[0].spark["x"]) == 60
    assert sum(rows[0].spark["per_second"]) == pytest.approx(2.0)


def test_the_overview_reads_hour_rows_for_a_day_and_agrees_with_the_model_page(
    history: dict[str, list[float]], now: dt.datetime
) -> None:
    rollup.roll_up_hours(now)
    assert HourStats.objects.filter(start__gte=now - dt.timedelta(hours=6)).exists()

    _, rows = reports.overview("24h", now=now)

    [row] = [r for r in rows if r.name == MODEL]
    assert row.figures == queries.summary("24h", model=MODEL, now=now)
    assert len(row.spark["x"]) == 25  # hour bins, the first one partial
    assert sum(row.spark["per_second"]) > 0
