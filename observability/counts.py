"""The counts of some requests that the per-minute hashes, the minute and hour rows and the
dashboard's figures all hold: requests, status codes, the latency histogram, batch sizes, stage-time
sums, a shadow's agreement, a pipeline's stages and how answers were served (observability/recorder.py
writes them, observability/rollup.py moves them, observability/queries.py reads them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from observability.models import StatsBucket
from observability.stages import StageCounts, is_stage_field


def text(value: bytes | str) -> str:
    """A Redis reply's name or value as text."""
    return value.decode() if isinstance(value, bytes) else value


def _int_keys(data: Mapping[str, Any]) -> dict[int, int]:
    return {int(k): int(v) for k, v in data.items()}


def _str_keys(data: Mapping[int, int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(data.items())}


SHADOW_FIELDS = frozenset({"sa", "sr", "sdn", "sdu"})


def _add(into: dict[int, int], other: Mapping[int, int]) -> None:
    get = into.get
    for key, count in other.items():
        into[key] = get(key, 0) + count


@dataclass
class Counts:
    """Requests, status codes, the latency histogram, batch sizes and stage-time sums of some
    requests, and a pipeline's per-stage figures (observability/stages.py)."""

    requests: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)
    batch_sizes: dict[int, int] = field(default_factory=dict)
    queue_us: int = 0
    compute_us: int = 0
    # A shadow's agreement with its champion: sa rows whose argmax agreed of sr
    # compared, and sdu the sum of max absolute differences (micro-units) over sdn requests.
    shadow: dict[str, int] = field(default_factory=dict)
    stages: StageCounts = field(default_factory=StageCounts)
    # How answers were made without running this version (recorder.py `d:` fields, without the prefix):
    # hit and miss of the response cache, fb:<fallback> answers, fr:<reason> what triggered them.
    served: dict[str, int] = field(default_factory=dict)
    compute_share_us: int = 0  # each computed request's share of its batch's run (compute / batch size), summed

    @classmethod
    def from_hash(cls, fields: Mapping[bytes | str, bytes | str], stages: bool = True) -> Counts:
        """From a recorder hash: n, c:<code>, l:<bucket>, b:<batch size>, qus, cus, the shadow's
        counters and, unless `stages` is False, the stage fields."""
        counts = cls()
        groups = {"c": counts.codes, "l": counts.latency, "b": counts.batch_sizes}
        for raw_name, raw_value in fields.items():
            name, value = text(raw_name), int(raw_value)
            kind, _, key = name.partition(":")
            if name == "n":
                counts.requests += value
            elif name == "qus":
                counts.queue_us += value
            elif name == "cus":
                counts.compute_us += value
            elif name == "csus":
                counts.compute_share_us += value
            elif name in SHADOW_FIELDS:
                counts.shadow[name] = counts.shadow.get(name, 0) + value
            elif kind == "d" and key:
                counts.served[key] = counts.served.get(key, 0) + value
            elif is_stage_field(kind, name):
                if stages:
                    counts.stages.take(name, value)
            elif kind in groups and key.lstrip("-").isdigit():
                _add(groups[kind], {int(key): value})
        return counts

    @classmethod
    def from_row(cls, row: StatsBucket) -> Counts:
        return cls(
            row.requests,
            _int_keys(row.codes),
            _int_keys(row.latency),
            _int_keys(row.batch_sizes),
            row.queue_us,
            row.compute_us,
            dict(row.shadow),
            StageCounts.from_json(row.stages),
            dict(row.served),
            row.compute_share_us,
        )

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        _add(self.codes, other.codes)
        _add(self.latency, other.latency)
        _add(self.batch_sizes, other.batch_sizes)
        self.queue_us += other.queue_us
        self.compute_us += other.compute_us
        self.compute_share_us += other.compute_share_us
        for name, value in other.shadow.items():
            self.shadow[name] = self.shadow.get(name, 0) + value
        self.stages.add(other.stages)
        for name, value in other.served.items():
            self.served[name] = self.served.get(name, 0) + value

    @property
    def successes(self) -> int:
        return self.codes.get(200, 0)

    @property
    def fallbacks(self) -> int:
        """Answers a fallback gave instead of this series' version (each also counts as a 200)."""
        return sum(n for name, n in self.served.items() if name.startswith("fb:"))

    @property
    def computed(self) -> int:
        """Successes this series' version computed: not cache hits, not fallback answers."""
        return max(0, self.successes - self.served.get("hit", 0) - self.fallbacks)

    @property
    def errors(self) -> dict[int, int]:
        """Requests per status code outside 2xx."""
        return {code: n for code, n in sorted(self.codes.items()) if not 200 <= code < 300}

    def as_fields(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "codes": _str_keys(self.codes),
            "latency": _str_keys(self.latency),
            "batch_sizes": _str_keys(self.batch_sizes),
            "queue_us": self.queue_us,
            "compute_us": self.compute_us,
            "compute_share_us": self.compute_share_us,
            "shadow": dict(sorted(self.shadow.items())),
            "stages": self.stages.as_json(),
            "served": dict(sorted(self.served.items())),
        }
