"""Latency figures for the observability and dashboard tests: observations as the gateway
records them, the minute they fall in, and a rollup run's claim stopped half-way."""

from __future__ import annotations

import datetime as dt
import random

import redis
from django.conf import settings

from dataplane.keys import RedisKeys
from observability import rollup
from observability.recorder import Observation

MODEL = "iris"


def minute_of(moment: dt.datetime) -> int:
    return int(moment.timestamp() // 60) * 60


def claim(client: redis.Redis, at: dt.datetime, now: dt.datetime) -> tuple[rollup.SeriesMinute, str]:
    """What a rollup run does first, and nothing more: as if it stopped right after claiming."""
    prefix = str(settings.TURNOUT["REDIS_PREFIX"])
    minute = minute_of(at)
    series = rollup.SeriesMinute(minute, MODEL, "1", "champion", rollup.new_token(now.timestamp()))
    key = rollup.claim_key(RedisKeys(prefix), series.token or "", series)
    hash_key = RedisKeys(prefix).obs_minute(minute, MODEL, "1", "champion")
    client.register_script(rollup.CLAIM_SCRIPT)(keys=[hash_key, key, RedisKeys(prefix).obs_index(minute)], args=[60])
    return series, key


def observations(
    count: int,
    *,
    model: str = MODEL,
    version: str = "1",
    arm: str = "champion",
    seed: int = 0,
    error_share: float = 0.0,
) -> list[Observation]:
    """Latencies spread over four orders of magnitude (0.1 ms to ~2 s), some errors, varied batch sizes."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        total = min(rng.lognormvariate(1.5, 1.6), 2000.0) + 0.1
        code = rng.choice((500, 503, 504, 400)) if rng.random() < error_share else 200
        queue = total * rng.uniform(0.05, 0.5)
        made.append(
            Observation(model, version, arm, code, total, 0.05, queue, total * 0.4, rng.choice((1, 2, 4, 8, 16, 32)))
        )
    return made


STAGES = ("preprocess", "model", "postprocess")


def pipeline_observations(
    count: int,
    *,
    model: str = MODEL,
    version: str = "1",
    arm: str = "champion",
    seed: int = 0,
    error_share: float = 0.0,
    stages: tuple[str, ...] = STAGES,
) -> list[Observation]:
    """A pipeline's requests: each stage's time spread over three orders of magnitude and its
    own scale (the first stage fastest), compute their sum plus some wiring, errors without stages."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        code = rng.choice((500, 504)) if rng.random() < error_share else 200
        times = [(name, min(rng.lognormvariate(0.5 * i - 1.0, 1.2), 1000.0) + 0.01) for i, name in enumerate(stages)]
        compute = sum(ms for _, ms in times) * rng.uniform(1.01, 1.1)
        queue = rng.uniform(0.1, 5.0)
        obs = Observation(model, version, arm, code, compute + queue + 0.05, 0.05, queue, compute, rng.choice((1, 4)))
        if code == 200:
            obs.stages = times
        made.append(obs)
    return made
