"""A pipeline's per-stage figures: the recorder's hash fields, bounded whatever a reply says,
moved into minute and hour rows, and percentiles within 2 % of the exact ones of the same
requests for windows that span hour rows, minute rows and live Redis minutes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client

from dataplane.keys import RedisKeys
from observability import queries, rollup, sketch
from observability.models import HourStats, MinuteStats
from observability.recorder import Observation
from observability.sketch import exact_quantile
from observability.stages import MAX_STAGES, StageCounts, StageFigures
from tests.support.figures import MODEL, STAGES, claim, minute_of, observations, pipeline_observations
from tests.support.prometheus import parse

pytestmark = pytest.mark.django_db

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def minute_hash(client: redis.Redis, at: dt.datetime, model: str = MODEL) -> dict[str, int]:
    key = RedisKeys(str(settings.TURNOUT["REDIS_PREFIX"])).obs_minute(minute_of(at), model, "1", "champion")
    return {name.decode(): int(value) for name, value in client.hgetall(key).items()}


def stage_fields(fields: dict[str, int]) -> dict[str, int]:
    return {name: value for name, value in fields.items() if name.split(":")[0] in ("s", "su", "scu")}


def stage_times(sent: list[Observation]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for obs in sent:
        for stage, ms in obs.stages or ():
            times[stage].append(ms)
    return times


def expected_json(sent: list[Observation]) -> dict[str, Any]:
    ok = [o for o in sent if o.code == 200 and o.stages]
    return {
        "compute_us": sum(int(o.compute_ms * 1000) for o in ok),
        "by_stage": {
            stage: {
                "us": sum(int(ms * 1000) for o in ok for name, ms in o.stages or () if name == stage),
                "latency": {str(k): v for k, v in sorted(Counter(sketch.bucket(ms) for ms in values).items())},
            }
            for stage, values in sorted(stage_times(ok).items())
        },
    }


def assert_close(figures: StageFigures, values: list[float]) -> None:
    assert figures.requests == len(values), figures.stage
    for q, got in ((0.5, figures.p50), (0.95, figures.p95), (0.99, figures.p99)):
        exact = exact_quantile(values, q)
        assert got is not None
        assert abs(got - exact) / exact <= 0.02, f"{figures.stage} p{int(q * 100)}: {got} vs exact {exact}"


def test_failed_requests_and_plain_models_add_no_stage_fields(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    failed = Observation(MODEL, "1", "champion", 504, 30.0, 0.05, 1.0, 0.0, 0, stages=[("preprocess", 1.0)])
    inject([failed, *observations(50, seed=1)], now)

    fields = minute_hash(redis_client, now)

    assert fields["n"] == 51
    assert stage_fields(fields) == {}
    assert queries.stage_summary("5m", model=MODEL, now=now) == []


def test_a_reply_with_too_many_or_malformed_stage_names_cannot_grow_the_hash_or_the_metrics(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime, client: Client, admin: Any
) -> None:
    # The multiprocess directory outlives a test run: a model of its own keeps earlier runs' series apart.
    model = f"stray-{uuid.uuid4().hex[:12]}"
    stray = [("bad:name", 1.0), ("Upper", 1.0), ("", 1.0), *[(f"s{i}", 1.0 + i) for i in range(MAX_STAGES + 4)]]
    inject([Observation(model, "1", "champion", 200, 200.0, 0.05, 1.0, 190.0, 1, stages=stray)], now)

    fields = stage_fields(minute_hash(redis_client, now, model=model))

    kept = {f"s{i}" for i in range(MAX_STAGES)}
    assert {name.split(":")[1] for name in fields if name.startswith("su:")} == kept
    assert {name.split(":")[1] for name in fields if name.startswith("s:")} == kept
    assert fields["scu"] == 190_000
    client.force_login(admin)
    samples = parse(client.get("/metrics").content.decode())
    series = {
        dict(labels)["stage"]
        for name, labels in samples
        if name == "turnout_inference_stage_seconds_count" and ("model", model) in labels
    }
    assert series == kept | {"validation", "queue", "compute", "total"}


def test_malformed_stage_fields_in_a_hash_are_ignored() -> None:
    counts = StageCounts()
    for name in ("s:bad", "s:Upper:3", "s:model:x", "s::4", "su:", "su:a:b", "sx:model:3"):
        counts.take(name, 7)
    counts.take("s:model:-12", 2)

    assert (counts.latency, counts.sum_us, counts.compute_us) == ({"model": {-12: 2}}, {}, 0)


def test_the_recorder_adds_a_sketch_and_a_sum_per_stage_to_the_minute(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    sent = inject(pipeline_observations(300, seed=1, error_share=0.1), now)

    fields = minute_hash(redis_client, now)

    ok = [o for o in sent if o.code == 200]
    assert fields["scu"] == sum(int(o.compute_ms * 1000) for o in ok)
    for stage, values in stage_times(sent).items():
        assert len(values) == len(ok)
        assert fields[f"su:{stage}"] == sum(int(ms * 1000) for o in ok for name, ms in o.stages or () if name == stage)
        buckets = {int(name.rsplit(":", 1)[1]): v for name, v in fields.items() if name.startswith(f"s:{stage}:")}
        assert buckets == Counter(sketch.bucket(ms) for ms in values)


def test_minutes_and_hours_carry_the_stage_figures(inject: Callable[..., Any], now: dt.datetime) -> None:
    now = now.replace(minute=30) - HOUR  # half past an hour that has begun, see test_rollup.py
    hour = now.replace(minute=0, second=0, microsecond=0) - 2 * HOUR
    sent: list[Observation] = []
    for minute in (0, 17, 59):
        sent += inject(pipeline_observations(80, seed=minute, error_share=0.1), hour + minute * MINUTE)
    plain = inject(observations(40, version="2", seed=5), hour + 17 * MINUTE)

    rollup.roll_up_minutes(now)
    rollup.roll_up_hours(now)

    first = MinuteStats.objects.get(version="1", start=hour)
    assert first.stages == expected_json(sent[:80])
    assert MinuteStats.objects.get(version="2").stages == {}
    assert HourStats.objects.get(version="1").stages == expected_json(sent)
    assert HourStats.objects.get(version="2").requests == len(plain)


@pytest.fixture
def history(inject: Callable[..., Any], now: dt.datetime) -> dict[str, list[Observation]]:
    """Pipeline requests in every kind of place, as tests/observability/test_queries.py's `history`:
    hour rows (one hour made stale by a late minute), minute rows and Redis."""
    old_hour = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=2)
    places: dict[str, list[Observation]] = {"hours": [], "minutes": [], "live": []}
    for i, offset in enumerate((0, 13, 59, 61, 119)):
        places["hours"] += inject(pipeline_observations(300, seed=i, error_share=0.05), old_hour + offset * MINUTE)
    rollup.roll_up_minutes(now)
    rollup.roll_up_hours(now)
    places["hours"] += inject(pipeline_observations(200, seed=9), old_hour + 30 * MINUTE)
    for i, at in enumerate((now - 5 * HOUR, now - 20 * MINUTE, now - 3 * MINUTE)):
        places["minutes"] += inject(pipeline_observations(400, seed=20 + i), at)
    rollup.roll_up_minutes(now)
    assert MinuteStats.objects.filter(in_hour=False, start__lt=old_hour + HOUR).exists()
    for i, at in enumerate((now - MINUTE, now)):
        places["live"] += inject(pipeline_observations(500, seed=40 + i, error_share=0.2), at)
    inject(pipeline_observations(300, version="2", seed=50), now - 2 * MINUTE)
    inject(pipeline_observations(300, model="other", seed=51), now - 2 * MINUTE)
    return places


def assert_stages_match(found: list[StageFigures], sent: list[Observation]) -> None:
    times = stage_times(sent)
    assert [f.stage for f in found] == sorted(STAGES)
    ok = [o for o in sent if o.code == 200]
    compute = sum(o.compute_ms for o in ok)
    for figures in found:
        assert_close(figures, times[figures.stage])
        assert figures.mean_ms == pytest.approx(sum(times[figures.stage]) / len(ok), rel=1e-3)
        assert figures.share == pytest.approx(sum(times[figures.stage]) / compute, rel=1e-3)
    assert sum(f.share or 0 for f in found) < 1  # the wiring between stages takes the rest


def test_stage_percentiles_over_a_week_a_day_and_an_hour_match_the_exact_ones(
    history: dict[str, list[Observation]], now: dt.datetime
) -> None:
    everything = history["hours"] + history["minutes"] + history["live"]

    assert_stages_match(queries.stage_summary("7d", model=MODEL, version="1", now=now), everything)
    assert_stages_match(queries.stage_summary("24h", model=MODEL, version="1", now=now), everything[-2200:])
    assert_stages_match(queries.stage_summary("1h", model=MODEL, version="1", now=now), everything[-1800:])
    assert_stages_match(queries.stage_summary("5m", model=MODEL, version="1", now=now), everything[-1400:])


def test_the_week_still_matches_once_hours_are_merged_again(
    history: dict[str, list[Observation]], now: dt.datetime
) -> None:
    rollup.roll_up_hours(now)
    MinuteStats.objects.filter(start__lt=now - dt.timedelta(days=1)).delete()
    everything = history["hours"] + history["minutes"] + history["live"]

    assert_stages_match(queries.stage_summary("7d", model=MODEL, version="1", now=now), everything)
    assert_stages_match(queries.stage_summary("30d", model=MODEL, version="1", now=now), everything)


def test_versions_and_models_are_kept_apart_and_merged_on_request(
    history: dict[str, list[Observation]], now: dt.datetime
) -> None:
    v2 = pipeline_observations(300, version="2", seed=50)
    both = history["minutes"][800:] + history["live"] + v2

    assert_stages_match(queries.stage_summary("5m", model=MODEL, version="2", now=now), v2)
    assert_stages_match(queries.stage_summary("5m", model=MODEL, now=now), both)
    assert queries.stage_summary("5m", model=MODEL, version="3", now=now) == []


def test_a_claimed_hash_adds_its_stages_once_before_and_after_its_commit(
    inject: Callable[..., Any], redis_client: redis.Redis, now: dt.datetime
) -> None:
    sent = inject(pipeline_observations(300, seed=5), now - 3 * MINUTE)
    prefix = str(settings.TURNOUT["REDIS_PREFIX"])
    series, key = claim(redis_client, now - 3 * MINUTE, now)
    assert_stages_match(queries.stage_summary("5m", model=MODEL, now=now), sent)

    rollup.apply_claim(series, rollup.Counts.from_hash(redis_client.hgetall(key)), now.timestamp())
    assert_stages_match(queries.stage_summary("5m", model=MODEL, now=now), sent)

    rollup.release_claim(redis_client, key, f"{prefix}:obs:index:{minute_of(now - 3 * MINUTE)}")
    assert_stages_match(queries.stage_summary("5m", model=MODEL, now=now), sent)


def test_the_overview_and_the_gates_leave_the_stages_undecoded(inject: Callable[..., Any], now: dt.datetime) -> None:
    inject(pipeline_observations(100, seed=1), now - 3 * MINUTE)
    inject(pipeline_observations(100, seed=2), now)
    rollup.roll_up_minutes(now)

    data = queries.collect(queries.window("5m", now))

    assert queries.merged(data.values()).requests == 200
    assert not queries.merged(data.values()).stages
