"""Beat's side of the latency figures: finished minutes move from Redis into
`MinuteStats`, complete hours are merged into `HourStats`, old rows are pruned.

Moving a minute exactly once, with runs that may overlap or die half-way:

1. Claim: one Lua script renames the series' hash `...:obs:{minute}:{model}:{version}:{arm}`
   to `...:obs:claim:{token}:{minute}:...` and swaps the names in the minute's
   index set. RENAME is atomic, so of two runs only one gets the hash; a web
   process that flushes late into the minute creates a fresh hash, moved by a
   later run.
2. Apply: in one transaction, lock the minute's row (creating it if needed),
   add the counts and record the token in `claims`. A token already there
   means the counts were added before (a run that died after its commit).
3. Release: after the commit, delete the claim and its index entry.

A claim older than `CLAIM_STALE_SECONDS` belongs to a run that died between 1
and 3; the next run applies it, and step 2 makes that safe either way. The
dashboard counts a claim unless its row already lists the token (queries.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import TruncHour
from django.utils import timezone

from controlplane.budget import Budget
from controlplane.redis_client import get_redis, redis_keys
from dataplane.keys import RedisKeys
from observability.counts import Counts, text
from observability.models import HourStats, MinuteStats
from observability.recorder import MINUTE_TTL_SECONDS

logger = logging.getLogger(__name__)

# Longer than the hard time limit of the rollup task (tasks.py): a claim this
# old cannot belong to a run that is still alive.
CLAIM_STALE_SECONDS = 300
HOUR = dt.timedelta(hours=1)

# KEYS: the series hash, its claim name, the minute's index. ARGV: the index TTL.
# Returns the claimed fields, or nil when another run took the hash first.
CLAIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[3], KEYS[1])
    return false
end
redis.call('RENAME', KEYS[1], KEYS[2])
-- SADD before SREM: a set emptied even for a moment is deleted, and with it its TTL.
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('SREM', KEYS[3], KEYS[1])
if redis.call('TTL', KEYS[3]) < 0 then
    redis.call('EXPIRE', KEYS[3], ARGV[1])
end
return redis.call('HGETALL', KEYS[2])
"""


@dataclass(frozen=True)
class SeriesMinute:
    """Which series and minute a Redis hash holds; `token` is set for a claimed hash."""

    minute: int  # epoch seconds
    model: str
    version: str
    arm: str
    token: str | None = None

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.minute, tz=dt.UTC)


def parse_key(keys: RedisKeys, key: str) -> SeriesMinute | None:
    """The series and minute of a hash name the recorder or a claim wrote; None for anything else."""
    head = keys.obs_head()
    if not key.startswith(head):
        return None
    parts = key[len(head) :].split(":")
    token = None
    if parts[0] == "claim" and len(parts) == 6:
        token, parts = parts[1], parts[2:]
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    return SeriesMinute(int(parts[0]), parts[1], parts[2], parts[3], token)


def claim_key(keys: RedisKeys, token: str, series: SeriesMinute) -> str:
    return keys.obs_claim(token, series.minute, series.model, series.version, series.arm)


def new_token(now_s: float) -> str:
    # The claim time leads the token so that a stale claim is recognised by its name.
    return f"{int(now_s)}-{secrets.token_hex(6)}"


def token_age(token: str, now_s: float) -> float:
    stamp, _, _ = token.partition("-")
    return now_s - int(stamp) if stamp.isdigit() else float("inf")


def finished_before(now_s: float) -> int:
    """Minutes starting before this (epoch seconds) are finished: older than the current minute minus one.

    Web processes flush once a second, so a minute is complete a second after it
    ends; the extra minute leaves room for a slow flush or skewed clocks.
    """
    return int(now_s // 60) * 60 - 60


def _now_s(now: dt.datetime | None) -> float:
    return (now or timezone.now()).timestamp()


def _finished_indexes(client: Any, keys: RedisKeys, before: int) -> list[tuple[int, str]]:
    head = keys.obs_index_head()
    found = []
    for raw in client.scan_iter(match=f"{head}*", count=1000):
        key = text(raw)
        minute = key[len(head) :]
        if minute.isdigit() and int(minute) < before:
            found.append((int(minute), key))
    return sorted(found)


def apply_claim(series: SeriesMinute, counts: Counts, now_s: float) -> bool:
    """Add a claimed hash's counts to its minute row, once per token; False if they were added before."""
    assert series.token is not None
    with transaction.atomic():
        row, _ = MinuteStats.objects.select_for_update().get_or_create(
            model=series.model, version=series.version, arm=series.arm, start=series.start
        )
        if series.token in row.claims:
            return False
        total = Counts.from_row(row)
        total.add(counts)
        for name, value in total.as_fields().items():
            setattr(row, name, value)
        # A token only matters while its claim can still exist in Redis.
        kept = [t for t in row.claims if token_age(t, now_s) < MINUTE_TTL_SECONDS + CLAIM_STALE_SECONDS]
        row.claims = [*kept, series.token]
        row.in_hour = False
        row.save()
    return True


def release_claim(client: Any, key: str, index: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.srem(index, key)
    pipe.execute()


def roll_up_minutes(now: dt.datetime | None = None, budget_s: float | None = None) -> int:
    """Move every finished minute from Redis into `MinuteStats`; the number of hashes moved.

    Safe to run twice at once and after a run that died: see the module docstring.
    With `budget_s`, it stops between two hashes once the budget is spent; the next
    run moves the rest.
    """
    budget = Budget(budget_s)
    now_s = _now_s(now)
    keys = redis_keys()
    client = get_redis()
    claim = client.register_script(CLAIM_SCRIPT)
    moved = 0
    for _, index in _finished_indexes(client, keys, finished_before(now_s)):
        for member in client.smembers(index):
            if budget.spent():
                logger.info("rollup: budget of %s s spent after %d hashes; the next run goes on", budget_s, moved)
                return moved
            key = text(member)
            series = parse_key(keys, key)
            if series is None:
                client.srem(index, member)
                continue
            if series.token is None:
                token = new_token(now_s)
                fields = claim(keys=[key, claim_key(keys, token, series), index], args=[MINUTE_TTL_SECONDS])
                if fields is None:
                    continue
                series = SeriesMinute(series.minute, series.model, series.version, series.arm, token)
                key = claim_key(keys, token, series)
                pairs = iter(fields)
                counts = Counts.from_hash(dict(zip(pairs, pairs, strict=True)))
            elif token_age(series.token, now_s) >= CLAIM_STALE_SECONDS:
                logger.warning("rollup: applying %s, left by a run that stopped", key)
                counts = Counts.from_hash(client.hgetall(key))
            else:
                continue  # another run is moving it right now
            if apply_claim(series, counts, now_s):
                moved += 1
            release_claim(client, key, index)
    return moved


def _hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def merge_hour(model: str, version: str, arm: str, hour: dt.datetime) -> HourStats | None:
    """Recompute one series' hour from its minutes; None if it has none."""
    with transaction.atomic():
        # The minute rows are locked in one order; a minute rollup that adds to one
        # of them waits, then marks it dirty again, and the next run picks it up.
        minutes = list(
            MinuteStats.objects.select_for_update()
            .filter(model=model, version=version, arm=arm, start__gte=hour, start__lt=hour + HOUR)
            .order_by("start")
        )
        if not minutes:
            return None
        total = Counts()
        for minute in minutes:
            total.add(Counts.from_row(minute))
        row, _ = HourStats.objects.update_or_create(
            model=model, version=version, arm=arm, start=hour, defaults=total.as_fields()
        )
        MinuteStats.objects.filter(pk__in=[m.pk for m in minutes], in_hour=False).update(in_hour=True)
    return row


def dirty_hours(
    since: dt.datetime | None, until: dt.datetime, model: str | None = None
) -> Iterable[tuple[str, str, str, dt.datetime]]:
    """(model, version, arm, hour) whose `HourStats` lacks some minute's current counts, hours before `until`."""
    dirty = MinuteStats.objects.filter(in_hour=False, start__lt=until)
    if since is not None:
        dirty = dirty.filter(start__gte=since)
    if model is not None:
        dirty = dirty.filter(model=model)
    return (
        dirty.annotate(hour=TruncHour("start", tzinfo=dt.UTC))
        .order_by()
        .values_list("model", "version", "arm", "hour")
        .distinct()
    )


def roll_up_hours(now: dt.datetime | None = None, budget_s: float | None = None) -> int:
    """Merge the minutes of complete hours into `HourStats`; the number of hour rows written.

    An hour is recomputed from all its minutes (not added to) whenever one of
    them changed, so running twice, or after a late minute, gives the same rows.
    With `budget_s`, it stops between two hours once the budget is spent.
    """
    budget = Budget(budget_s)
    until = dt.datetime.fromtimestamp(finished_before(_now_s(now)), tz=dt.UTC)
    written = 0
    for model, version, arm, hour in list(dirty_hours(None, _hour_of(until))):
        if budget.spent():
            logger.info("rollup: budget of %s s spent after %d hours; the next run goes on", budget_s, written)
            break
        if merge_hour(model, version, arm, hour) is not None:
            written += 1
    return written


PRUNE_BATCH = 5_000


def prune(now: dt.datetime | None = None, budget_s: float | None = None) -> tuple[int, int]:
    """Delete minute and hour rows past their retention (settings.TURNOUT METRICS_*_RETENTION_DAYS).

    In batches, each its own short statement, so a long backlog never holds one huge
    delete; with `budget_s` it stops between batches and the next run goes on.
    """
    budget = Budget(budget_s)
    moment = now or timezone.now()
    conf = settings.TURNOUT
    minute_cutoff = moment - dt.timedelta(days=conf["METRICS_MINUTE_RETENTION_DAYS"])
    hour_cutoff = moment - dt.timedelta(days=conf["METRICS_HOUR_RETENTION_DAYS"])
    deleted = {MinuteStats: 0, HourStats: 0}
    for model, cutoff in ((MinuteStats, minute_cutoff), (HourStats, hour_cutoff)):
        while not budget.spent():
            batch = list(model.objects.filter(start__lt=cutoff).values_list("pk", flat=True)[:PRUNE_BATCH])
            if not batch:
                break
            count, _ = model.objects.filter(pk__in=batch).delete()
            deleted[model] += count
    return deleted[MinuteStats], deleted[HourStats]
