"""Per-stage latency of pipeline requests, per minute: what the recorder adds to a minute's
hash, how it is stored in a rollup row, merged and turned into the dashboard's figures.
No Django imports.

Only successful requests that carried stage times (a pipeline's) count. Hash fields:
- `s:<stage>:<bucket>`: requests whose stage time fell in sketch bucket `<bucket>`;
- `su:<stage>`: the sum of the stage's times (µs);
- `scu`: the sum of the compute times (µs) of the same requests, the denominator of a
  stage's share (compute is the stages plus the wiring between them).

A version's stages are fixed when it is created, at most `MAX_STAGES`, so a hash holds at
most that many stages, each with the buckets its times spread over. The recorder keeps no
more than `MAX_STAGES` of one request's stages and drops a name the registry would refuse
(`kept`), so neither a stray reply nor a colon can grow or break a hash or add Prometheus
series.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from observability import sketch
from registry.pipelines import MAX_STAGES, STAGE_NAME

__all__ = ["MAX_STAGES", "StageCounts", "StageFigures", "add_fields", "is_stage_field", "kept"]

LATENCY = "s"
SUM = "su"
COMPUTE = "scu"
_KINDS = frozenset({LATENCY, SUM})


def kept(stages: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """The stage times worth recording: those with a valid stage name, at most MAX_STAGES."""
    return [(name, ms) for name, ms in stages if STAGE_NAME.match(name)][:MAX_STAGES]


def add_fields(fields: defaultdict[str, int], stages: list[tuple[str, float]], compute_ms: float) -> None:
    """Add one successful request's `kept` stage times to a minute's pending hash fields."""
    for name, ms in stages:
        fields[f"{LATENCY}:{name}:{sketch.bucket(ms)}"] += 1
        fields[f"{SUM}:{name}"] += int(ms * 1000)
    fields[COMPUTE] += int(compute_ms * 1000)


def is_stage_field(kind: str, name: str) -> bool:
    """Whether a hash field (`kind` is its name up to the first colon) is one of this module's."""
    return kind in _KINDS or name == COMPUTE


@dataclass
class StageCounts:
    """The stage figures of some requests: a latency histogram and a time sum per stage."""

    latency: dict[str, dict[int, int]] = field(default_factory=dict)
    sum_us: dict[str, int] = field(default_factory=dict)
    compute_us: int = 0

    def __bool__(self) -> bool:
        return bool(self.latency)

    def take(self, name: str, value: int) -> None:
        """Add one hash field; a malformed one is ignored."""
        if name == COMPUTE:
            self.compute_us += value
            return
        kind, _, rest = name.partition(":")
        if kind == SUM and STAGE_NAME.match(rest):
            self.sum_us[rest] = self.sum_us.get(rest, 0) + value
        elif kind == LATENCY:
            stage, _, index = rest.partition(":")
            if STAGE_NAME.match(stage) and index.lstrip("-").isdigit():
                histogram = self.latency.setdefault(stage, {})
                histogram[int(index)] = histogram.get(int(index), 0) + value

    def add(self, other: StageCounts) -> None:
        for stage, histogram in other.latency.items():
            mine = self.latency.get(stage)
            if mine is None:
                self.latency[stage] = dict(histogram)
                continue
            get = mine.get
            for index, count in histogram.items():
                mine[index] = get(index, 0) + count
        for stage, total in other.sum_us.items():
            self.sum_us[stage] = self.sum_us.get(stage, 0) + total
        self.compute_us += other.compute_us

    def as_json(self) -> dict[str, Any]:
        """The rollup rows' `stages` column: {} without stages, else
        {"compute_us": n, "by_stage": {stage: {"us": n, "latency": {bucket: count}}}}."""
        if not self:
            return {}
        return {
            "compute_us": self.compute_us,
            "by_stage": {
                stage: {
                    "us": self.sum_us.get(stage, 0),
                    "latency": {str(k): v for k, v in sorted(histogram.items())},
                }
                for stage, histogram in sorted(self.latency.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageCounts:
        counts = cls(compute_us=int(data.get("compute_us", 0)))
        for stage, entry in data.get("by_stage", {}).items():
            # JSON numbers are ints already; only the keys are strings. zip and map
            # halve the time of a dict comprehension, which dominated a day's merge.
            latency = entry["latency"]
            counts.latency[stage] = dict(zip(map(int, latency), latency.values(), strict=True))
            counts.sum_us[stage] = int(entry["us"])
        return counts

    def figures(self, order: Iterable[str] = ()) -> list[StageFigures]:
        """Each stage's figures: the stages named in `order` first, in that order, then any other by name."""
        known = [stage for stage in order if stage in self.latency]
        rest = sorted(set(self.latency) - set(known))
        return [StageFigures.of(stage, self, self.compute_us) for stage in [*known, *rest]]


@dataclass(frozen=True)
class StageFigures:
    """One stage's figures over some successful requests; times in milliseconds."""

    stage: str
    requests: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean_ms: float | None
    share: float | None  # of the compute time of the requests that ran the stage; None without it

    @classmethod
    def of(cls, stage: str, counts: StageCounts, compute_us: int) -> StageFigures:
        histogram = counts.latency.get(stage, {})
        requests = sum(histogram.values())
        quantiles = sketch.quantiles(histogram, (0.5, 0.95, 0.99))
        total_us = counts.sum_us.get(stage, 0)
        return cls(
            stage=stage,
            requests=requests,
            p50=quantiles[0.5],
            p95=quantiles[0.95],
            p99=quantiles[0.99],
            mean_ms=total_us / requests / 1000 if requests else None,
            share=total_us / compute_us if compute_us else None,
        )

    @property
    def share_percent(self) -> float | None:
        return None if self.share is None else 100 * self.share

    def as_json(self) -> dict[str, Any]:
        def rounded(value: float | None, digits: int = 3) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "stage": self.stage,
            "requests": self.requests,
            "p50": rounded(self.p50),
            "p95": rounded(self.p95),
            "p99": rounded(self.p99),
            "mean_ms": rounded(self.mean_ms),
            "share": rounded(self.share, 5),
        }
