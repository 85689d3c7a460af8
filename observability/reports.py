"""Reports built from the window queries: the overview's rows, a model's page,
queue depths and the workers page."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone

from controlplane.redis_client import get_redis, redis_keys
from dataplane.priority import LEVELS
from observability.counts import Counts
from observability.queries import (
    HOUR,
    MINUTE_RESOLUTION_UP_TO,
    WINDOWS,
    Figures,
    Timeline,
    Window,
    _by_bin,
    _select,
    collect,
    merged,
    merged_stages,
    sparkline,
    stage_window,
    window,
)
from observability.stages import StageFigures
from registry.models import ModelVersion, PipelineStage, RegisteredModel, VersionStatus


@dataclass
class ModelRow:
    """A line of the overview."""

    name: str
    registered: bool
    figures: Figures
    spark: dict[str, list[Any]]

    @property
    def spark_id(self) -> str:
        return f"spark-{self.name}"


def overview(window_name: str, now: dt.datetime | None = None) -> tuple[Window, list[ModelRow]]:
    """Every registered model, and any other model with requests in the window, by name."""
    # From a day up, hour bins: the sparkline needs no more, and whole hours are read from hour rows.
    daily = WINDOWS.get(window_name, MINUTE_RESOLUTION_UP_TO) >= MINUTE_RESOLUTION_UP_TO
    win = window(window_name, now, step=HOUR if daily else None)
    data = collect(win)
    per_model: dict[str, list[dict[int, Counts]]] = defaultdict(list)
    for (name, _, _), bins in data.items():
        per_model[name].append(bins)
    registered = set(RegisteredModel.objects.values_list("name", flat=True))
    rows = []
    for name in sorted(registered | set(per_model)):
        selected = per_model.get(name, [])
        rows.append(
            ModelRow(
                name=name,
                registered=name in registered,
                figures=Figures.of(merged(selected), win.seconds),
                spark=sparkline(win, selected),
            )
        )
    return win, rows


@dataclass
class VersionReport:
    """One version's figures and charts on the model page."""

    version: str
    arms: list[str]
    figures: Figures
    timeline: Timeline
    queue_depth: int | None
    # A pipeline version's stages, in its order; is_pipeline says whether to show them at all.
    is_pipeline: bool = False
    stages: list[StageFigures] = field(default_factory=list)

    @property
    def chart_id(self) -> str:
        return f"charts-v{self.version}"

    def chart_data(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "summary": self.figures.as_json(),
            "timeline": self.timeline.as_json(),
            "batch_sizes": {
                "sizes": list(self.figures.batch_sizes),
                "counts": list(self.figures.batch_sizes.values()),
            },
        }


@dataclass
class ModelReport:
    """The model page: the whole model's figures, then each version with traffic or a queue."""

    name: str
    window: Window
    figures: Figures
    versions: list[VersionReport]
    idle: list[str]  # ready versions without requests or queue in the window

    def summary_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "model": self.name,
            "window": self.window.name,
            "resolution": self.window.resolution,
            "summary": self.figures.as_json(),
            "versions": {v.version: v.figures.as_json() for v in self.versions},
        }
        pipelines = {v.version: [s.as_json() for s in v.stages] for v in self.versions if v.is_pipeline}
        if pipelines:
            found["stages"] = pipelines
        return found


def _newest_first(version: str) -> tuple[int, str]:
    return (-int(version) if version.isdigit() else 0, version)


def model_report(name: str, window_name: str, now: dt.datetime | None = None) -> ModelReport:
    """The figures of model `name` and of each of its versions over the window, with charts per bin."""
    moment = now or timezone.now()
    win = window(window_name, moment)
    stage_win = stage_window(window_name, moment)
    # Stages come with the rest when the bins are the same; from a day up, from hour bins.
    together = stage_win.step == win.step
    data = collect(win, name, stages=together)
    stage_data = data if together else collect(stage_win, name, stages=True)
    depths = queue_depths(name)
    order = stage_order(name)
    versions = sorted({v for _, v, _ in data} | set(depths), key=_newest_first)
    reports, idle = [], []
    total = Counts()
    for version in versions:
        selected = _select(data, version)
        counts = merged(selected)
        total.add(counts)
        depth = depths.get(version)
        if not counts.requests and not depth:
            idle.append(version)
            continue
        stages = counts.stages if together else merged_stages(_select(stage_data, version))
        reports.append(
            VersionReport(
                version=version,
                arms=sorted({a for _, v, a in data if v == version}),
                figures=Figures.of(counts, win.seconds),
                timeline=Timeline.of(win, _by_bin(selected)),
                queue_depth=depth,
                is_pipeline=version in order or bool(stages),
                stages=stages.figures(order.get(version, ())),
            )
        )
    return ModelReport(
        name=name,
        window=win,
        figures=Figures.of(total, win.seconds),
        versions=reports,
        idle=idle,
    )


def stage_order(model: str) -> dict[str, list[str]]:
    """The stage names of each pipeline version of `model` (by number), in the order they run."""
    order: dict[str, list[str]] = {}
    stages = (
        PipelineStage.objects.filter(pipeline_version__model__name=model)
        .order_by("pipeline_version__number", "position")
        .values_list("pipeline_version__number", "name")
    )
    for number, stage in stages:
        order.setdefault(str(number), []).append(stage)
    return order


def queue_depths(model: str) -> dict[str, int]:
    """Requests waiting or running (the stream's length) per ready version number of `model`, now."""
    versions = list(
        ModelVersion.objects.filter(model__name=model, status=VersionStatus.READY).values_list("id", "number")
    )
    if not versions:
        return {}
    keys = redis_keys()
    pipe = get_redis().pipeline(transaction=False)
    for version_id, _ in versions:
        for stream in keys.request_streams(version_id):  # every priority level's
            pipe.xlen(stream)
    lengths = pipe.execute()
    levels = len(LEVELS)
    return {str(number): sum(lengths[i * levels : (i + 1) * levels]) for i, (_, number) in enumerate(versions)}


@dataclass(frozen=True)
class Loaded:
    model: str
    version: str
    provider: str | None


@dataclass
class WorkerInfo:
    """What a worker's last heartbeat said about it."""

    name: str
    alive: bool
    seen_seconds_ago: float
    host: str | None = None
    pid: int | None = None
    serving: list[Loaded] = field(default_factory=list)
    memory_bytes: int | None = None
    batches: int | None = None


def workers(now: dt.datetime | None = None) -> list[WorkerInfo]:
    """Workers that sent a heartbeat in the last day, the live ones first."""
    now_s = (now or timezone.now()).timestamp()
    ttl = float(settings.TURNOUT["WORKER_TTL_SECONDS"])
    client = get_redis()
    keys = redis_keys()
    members: list[Any] = client.zrange(keys.workers(), 0, -1, withscores=True)
    names = [member.decode() for member, _ in members]
    infos = client.mget([keys.worker_info(n) for n in names]) if names else []
    found = []
    for name, (_, seen), raw in zip(names, members, infos, strict=True):
        info: dict[str, Any] = orjson.loads(raw) if raw else {}
        serving = [
            Loaded(str(s.get("model")), str(s.get("version")), s.get("provider"))
            for s in (info.get("serving") or {}).values()
        ]
        found.append(
            WorkerInfo(
                name=name,
                alive=seen >= now_s - ttl,
                seen_seconds_ago=max(0.0, now_s - seen),
                host=info.get("host"),
                pid=info.get("pid"),
                serving=sorted(serving, key=lambda s: (s.model, s.version)),
                memory_bytes=info.get("memory_bytes"),
                batches=info.get("batches"),
            )
        )
    return sorted(found, key=lambda w: (not w.alive, w.name))
