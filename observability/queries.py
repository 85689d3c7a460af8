"""The dashboard's figures for a window of time: merged latency histograms and
their percentiles, throughput, errors, batch sizes, queue waits, a pipeline's
stages, per model, version and arm, overall and per minute or hour.

Where each minute comes from:
- in hour bins (windows beyond a day, and the overview's day), whole hours
  older than the Redis TTL: their `HourStats` row, unless one of the hour's
  minutes changed since it was merged (then that series' minutes of the hour);
- every other minute: its `MinuteStats` row, plus the hashes still in Redis,
  so the current minute is on the dashboard a second after its requests.

PostgreSQL is read before Redis. A hash still in Redis unclaimed was never
added to a row; a claimed one is skipped if the row read lists its token. So a
request is never counted twice, whatever the rollup does meanwhile; at worst a
claim deleted in the instant between the two reads is missed until the next refresh.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from controlplane.redis_client import get_redis, redis_keys
from observability.counts import Counts
from observability.figures import Figures, rounded
from observability.models import HourStats, MinuteStats
from observability.recorder import MINUTE_TTL_SECONDS
from observability.rollup import dirty_hours, parse_key
from observability.stages import StageCounts, StageFigures

MINUTE = 60
HOUR = 3600
WINDOWS: dict[str, dt.timedelta] = {
    "5m": dt.timedelta(minutes=5),
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
DASHBOARD_WINDOWS = ("5m", "1h", "24h", "7d")
DEFAULT_WINDOW = "1h"
# Per-minute points up to a day; per hour beyond.
MINUTE_RESOLUTION_UP_TO = dt.timedelta(hours=24)
SPARK_POINTS = 60

# KEYS: minute index sets. Returns [hash name, [field, value, ...], ...] as of one instant.
SNAPSHOT_SCRIPT = """
local out = {}
for _, index in ipairs(KEYS) do
    for _, key in ipairs(redis.call('SMEMBERS', index)) do
        local fields = redis.call('HGETALL', key)
        if #fields > 0 then
            out[#out + 1] = key
            out[#out + 1] = fields
        end
    end
end
return out
"""

Series = tuple[str, str, str]  # model, version, arm


@dataclass(frozen=True)
class Window:
    """From `start` (a minute, or an hour beyond a day) to `now`, in `step`-second bins."""

    name: str
    now: dt.datetime
    start: int  # epoch seconds
    step: int

    @property
    def now_s(self) -> float:
        return self.now.timestamp()

    @property
    def last(self) -> int:
        return self.bin_of(self.now_s)

    @property
    def end(self) -> int:
        return self.last + self.step

    @property
    def seconds(self) -> float:
        return max(self.now_s - self.start, 1.0)

    @property
    def resolution(self) -> str:
        return "minute" if self.step == MINUTE else "hour"

    def bins(self) -> range:
        return range(self.bin_of(self.start), self.end, self.step)

    def bin_of(self, moment: float) -> int:
        return int(moment // self.step) * self.step

    def bin_seconds(self, start: int) -> float:
        """How much of a bin the window holds: all of it, except for the first and the current one."""
        return max(min(self.now_s, start + self.step) - max(start, self.start), 1.0)


def window(name: str, now: dt.datetime | None = None, step: int | None = None) -> Window:
    """The window named `name` (a key of WINDOWS) ending now, in bins of `step` seconds
    (by default a minute up to 24 hours, an hour beyond); ValueError for any other name."""
    if name not in WINDOWS:
        raise ValueError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}")
    moment = now or timezone.now()
    span = WINDOWS[name]
    natural = MINUTE if span <= MINUTE_RESOLUTION_UP_TO else HOUR
    last = int(moment.timestamp() // natural) * natural
    return Window(name, moment, last - int(span.total_seconds()) + natural, step or natural)


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def _int_keys(data: Mapping[str, int]) -> dict[int, int]:
    return dict(zip(map(int, data), data.values(), strict=True))


def _values(row: Mapping[str, Any]) -> Counts:
    return Counts(
        row["requests"],
        _int_keys(row["codes"]),
        _int_keys(row["latency"]),
        _int_keys(row["batch_sizes"]),
        row["queue_us"],
        row["compute_us"],
        dict(row["shadow"]),
        StageCounts.from_json(row["stages"]) if row.get("stages") else StageCounts(),
        dict(row["served"]),
        row["compute_share_us"],
    )


COLUMNS = (
    "model", "version", "arm", "start",
    "requests", "codes", "latency", "batch_sizes", "queue_us", "compute_us", "shadow", "served", "compute_share_us",
)  # fmt: skip
# Only the model page reads a pipeline's stages: sixteen sketches a row are not worth
# decoding for the overview or the canary gates.
STAGE_COLUMNS = (*COLUMNS, "stages")


def collect(win: Window, model: str | None = None, stages: bool = False) -> dict[Series, dict[int, Counts]]:
    """Counts per series and bin (epoch seconds of the bin's start), every source merged once;
    with `stages`, a pipeline's per-stage figures too."""
    result: dict[Series, dict[int, Counts]] = defaultdict(dict)
    columns = STAGE_COLUMNS if stages else COLUMNS

    def put(series: Series, moment: dt.datetime | int, counts: Counts) -> None:
        epoch = moment if isinstance(moment, int) else int(moment.timestamp())
        bins = result[series]
        slot = bins.get(win.bin_of(epoch))
        if slot is None:
            bins[win.bin_of(epoch)] = counts  # fresh from the row or hash: no need to copy
        else:
            slot.add(counts)

    # Minutes from here on may still have hashes in Redis: they come from minute
    # rows and Redis. In hour bins, whole hours before it come from hour rows.
    recent = int((win.now_s - MINUTE_TTL_SECONDS) // HOUR) * HOUR
    hours_from = hours_until = win.start
    if win.step == HOUR:
        hours_from = -(-win.start // HOUR) * HOUR
        hours_until = max(hours_from, recent)
    before_hours = Q(start__gte=_utc(win.start), start__lt=_utc(hours_from))
    minutes = MinuteStats.objects.filter(before_hours | Q(start__gte=_utc(hours_until), start__lt=_utc(win.end)))
    if model is not None:
        minutes = minutes.filter(model=model)
    if hours_until > hours_from:
        _hours(put, _utc(hours_from), _utc(hours_until), model, columns)

    claimed: dict[tuple[Series, int], list[str]] = {}
    for row in minutes.values(*columns, "claims"):
        series = (row["model"], row["version"], row["arm"])
        put(series, row["start"], _values(row))
        if row["claims"]:
            claimed[(series, int(row["start"].timestamp()))] = row["claims"]

    keys = redis_keys()
    for name, fields in _redis_snapshot(max(hours_until, win.start, recent), win.end):
        found = parse_key(keys, name)
        if found is None or (model is not None and found.model != model):
            continue
        series = (found.model, found.version, found.arm)
        if found.token is not None and found.token in claimed.get((series, found.minute), ()):
            continue  # already in the row read above; only its deletion is pending
        pairs = iter(fields)
        put(series, found.minute, Counts.from_hash(dict(zip(pairs, pairs, strict=True)), stages))
    return result


Put = Callable[[Series, dt.datetime, Counts], None]


def _hours(put: Put, since: dt.datetime, until: dt.datetime, model: str | None, columns: tuple[str, ...]) -> None:
    """Whole hours from their HourStats rows, or from their minutes where a minute changed since."""
    hours = HourStats.objects.filter(start__gte=since, start__lt=until)
    if model is not None:
        hours = hours.filter(model=model)
    stale = set(dirty_hours(since, until, model))
    for row in hours.values(*columns):
        if (row["model"], row["version"], row["arm"], row["start"]) not in stale:
            put((row["model"], row["version"], row["arm"]), row["start"], _values(row))
    if not stale:
        return
    first = min(h for *_, h in stale)
    last = max(h for *_, h in stale) + dt.timedelta(hours=1)
    redo = MinuteStats.objects.filter(start__gte=first, start__lt=last)
    if model is not None:
        redo = redo.filter(model=model)
    for row in redo.values(*columns):
        hour = row["start"].replace(minute=0, second=0, microsecond=0)
        if (row["model"], row["version"], row["arm"], hour) in stale:
            put((row["model"], row["version"], row["arm"]), row["start"], _values(row))


def _redis_snapshot(since: int, until: int) -> list[tuple[str, list[bytes]]]:
    keys = redis_keys()
    first = int(since // MINUTE) * MINUTE
    indexes = [keys.obs_index(minute) for minute in range(first, until, MINUTE)]
    if not indexes:
        return []
    raw = get_redis().register_script(SNAPSHOT_SCRIPT)(keys=indexes)
    names = raw[0::2]
    return [(n.decode() if isinstance(n, bytes) else n, fields) for n, fields in zip(names, raw[1::2], strict=True)]


def merged(bins: Iterable[Mapping[int, Counts]]) -> Counts:
    total = Counts()
    for per_bin in bins:
        for counts in per_bin.values():
            total.add(counts)
    return total


@dataclass
class Timeline:
    """Columns for charts, one entry per bin: uPlot's data layout."""

    x: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    per_second: list[float] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p95: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)
    queue_ms: list[float | None] = field(default_factory=list)
    errors: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, win: Window, per_bin: Mapping[int, Counts]) -> Timeline:
        line = cls()
        codes = sorted({code for counts in per_bin.values() for code in counts.errors})
        line.errors = {code: [] for code in codes}
        for start in win.bins():
            counts = per_bin.get(start, Counts())
            figures = Figures.of(counts, win.bin_seconds(start))
            line.x.append(start)
            line.requests.append(counts.requests)
            line.per_second.append(round(figures.per_second, 4))
            line.p50.append(rounded(figures.p50))
            line.p95.append(rounded(figures.p95))
            line.p99.append(rounded(figures.p99))
            line.queue_ms.append(rounded(figures.mean_queue_ms))
            for code in codes:
                line.errors[code].append(counts.codes.get(code, 0))
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "per_second": self.per_second,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "queue_ms": self.queue_ms,
            "errors": {str(code): counts for code, counts in self.errors.items()},
        }


def sparkline(win: Window, selected: Iterable[Mapping[int, Counts]], points: int = SPARK_POINTS) -> dict[str, Any]:
    """Requests per second in at most `points` points, neighbouring bins averaged."""
    requests: dict[int, int] = defaultdict(int)
    for bins in selected:
        for start, counts in bins.items():
            requests[start] += counts.requests
    starts = list(win.bins())
    size = max(1, math.ceil(len(starts) / points))
    x, y = [], []
    for i in range(0, len(starts), size):
        group = starts[i : i + size]
        x.append(group[0])
        y.append(round(sum(requests[b] for b in group) / sum(win.bin_seconds(b) for b in group), 4))
    return {"x": x, "per_second": y}


def _select(
    data: Mapping[Series, dict[int, Counts]], version: str | None = None, arm: str | None = None
) -> list[dict[int, Counts]]:
    return [bins for (_, v, a), bins in data.items() if (version is None or v == version) and (arm is None or a == arm)]


def _by_bin(selected: list[dict[int, Counts]]) -> Mapping[int, Counts]:
    if len(selected) == 1:
        return selected[0]  # read only from here on
    per_bin: dict[int, Counts] = {}
    for bins in selected:
        for start, counts in bins.items():
            per_bin.setdefault(start, Counts()).add(counts)
    return per_bin


def summary(
    window_name: str,
    *,
    model: str | None = None,
    version: str | None = None,
    arm: str | None = None,
    now: dt.datetime | None = None,
) -> Figures:
    """The figures of every request in the window, optionally of one model, version and arm."""
    win = window(window_name, now)
    return Figures.of(merged(_select(collect(win, model), version, arm)), win.seconds)


def timeline(
    window_name: str,
    *,
    model: str | None = None,
    version: str | None = None,
    arm: str | None = None,
    now: dt.datetime | None = None,
) -> Timeline:
    """Per-minute (windows up to 24 h) or per-hour figures, optionally of one model, version and arm."""
    win = window(window_name, now)
    return Timeline.of(win, _by_bin(_select(collect(win, model), version, arm)))


def stage_window(window_name: str, now: dt.datetime | None = None) -> Window:
    """The window to read a pipeline's stages over: from a day up, in hour bins, so that whole
    hours come from hour rows. A day of minute rows of sixteen stages (~280 buckets each) took
    5 s to decode and merge; the same day in hour bins reads about a sixth of the rows."""
    daily = WINDOWS.get(window_name, MINUTE_RESOLUTION_UP_TO) >= MINUTE_RESOLUTION_UP_TO
    return window(window_name, now, step=HOUR if daily else None)


def merged_stages(bins: Iterable[Mapping[int, Counts]]) -> StageCounts:
    total = StageCounts()
    for per_bin in bins:
        for counts in per_bin.values():
            total.add(counts.stages)
    return total


def stage_summary(
    window_name: str,
    *,
    model: str,
    version: str | None = None,
    arm: str | None = None,
    now: dt.datetime | None = None,
) -> list[StageFigures]:
    """Per-stage figures of a pipeline's successful requests in the window, by stage name;
    empty for a plain model."""
    win = stage_window(window_name, now)
    return merged_stages(_select(collect(win, model, stages=True), version, arm)).figures()
