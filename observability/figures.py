"""What the dashboard, the rollout reports and the canary gates show for some requests over a
time: throughput, errors, percentiles, queue and compute means, a shadow's agreement, cache hits,
fallbacks and the worker's compute per 1,000 requests, from their merged counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from observability import sketch
from observability.counts import Counts

QUANTILES = (0.5, 0.95, 0.99)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class Figures:
    """What the dashboard shows for some requests over `seconds`; latencies in milliseconds."""

    requests: int
    per_second: float
    error_rate: float | None  # the share of answers outside 2xx; None without requests
    p50: float | None
    p95: float | None
    p99: float | None
    errors: dict[int, int]  # status code outside 2xx -> requests
    batch_sizes: dict[int, int]  # batch size -> successful requests
    mean_queue_ms: float | None
    mean_compute_ms: float | None
    agreement: float | None = None  # a shadow: share of rows whose argmax matched the champion's
    mean_max_difference: float | None = None  # a shadow: mean of the per-request max |champion - shadow|
    cache_hits: int = 0
    cache_hit_ratio: float | None = None  # hits / look-ups; None when the response cache was never asked
    fallbacks: dict[str, int] = field(default_factory=dict)  # fallback that answered -> requests
    fallback_reasons: dict[str, int] = field(default_factory=dict)  # failure that triggered one -> requests
    fallback_rate: float | None = None  # the share of answers a fallback gave
    # Worker time per 1,000 requests the version computed (each request's share of its batch's run):
    # what a cheaper variant saves.
    compute_ms_per_1000: float | None = None

    @classmethod
    def of(cls, counts: Counts, seconds: float) -> Figures:
        quantiles = sketch.quantiles(counts.latency, QUANTILES)
        errors = counts.errors
        # Queue and compute figures are of what this version computed: cache hits and fallback answers add none.
        ok = counts.computed
        served = counts.served
        lookups = served.get("hit", 0) + served.get("miss", 0)
        return cls(
            requests=counts.requests,
            per_second=counts.requests / seconds if seconds > 0 else 0.0,
            error_rate=sum(errors.values()) / counts.requests if counts.requests else None,
            p50=quantiles[0.5],
            p95=quantiles[0.95],
            p99=quantiles[0.99],
            errors=errors,
            batch_sizes=dict(sorted(counts.batch_sizes.items())),
            mean_queue_ms=counts.queue_us / ok / 1000 if ok else None,
            mean_compute_ms=counts.compute_us / ok / 1000 if ok else None,
            agreement=counts.shadow["sa"] / counts.shadow["sr"] if counts.shadow.get("sr") else None,
            mean_max_difference=counts.shadow["sdu"] / counts.shadow["sdn"] / 1e6 if counts.shadow.get("sdn") else None,
            cache_hits=served.get("hit", 0),
            cache_hit_ratio=served.get("hit", 0) / lookups if lookups else None,
            fallbacks={name[3:]: n for name, n in sorted(served.items()) if name.startswith("fb:")},
            fallback_reasons={name[3:]: n for name, n in sorted(served.items()) if name.startswith("fr:")},
            fallback_rate=counts.fallbacks / counts.requests if counts.requests else None,
            compute_ms_per_1000=counts.compute_share_us / ok if ok else None,
        )

    @property
    def per_second_text(self) -> str:
        if self.per_second == 0 or self.per_second >= 0.01:
            return f"{self.per_second:.2f}"
        return "< 0.01"

    @property
    def error_percent(self) -> float | None:
        return None if self.error_rate is None else 100 * self.error_rate

    @property
    def failure_rate(self) -> float | None:
        """Errors and fallback answers together: the share of requests the version itself did not answer
        (what canary gates judge; a version that only succeeds through fallbacks is not healthy)."""
        if self.error_rate is None:
            return None
        return self.error_rate + (self.fallback_rate or 0.0)

    @property
    def cache_hit_percent(self) -> float | None:
        return None if self.cache_hit_ratio is None else 100 * self.cache_hit_ratio

    @property
    def fallback_percent(self) -> float | None:
        return None if self.fallback_rate is None else 100 * self.fallback_rate

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "per_second": round(self.per_second, 4),
            "error_rate": rounded(self.error_rate, 5),
            "p50": rounded(self.p50),
            "p95": rounded(self.p95),
            "p99": rounded(self.p99),
            "errors": {str(code): n for code, n in self.errors.items()},
            "batch_sizes": {str(size): n for size, n in self.batch_sizes.items()},
            "mean_queue_ms": rounded(self.mean_queue_ms),
            "mean_compute_ms": rounded(self.mean_compute_ms),
            "agreement": rounded(self.agreement, 5),
            "mean_max_difference": rounded(self.mean_max_difference, 6),
            "cache_hits": self.cache_hits,
            "cache_hit_ratio": rounded(self.cache_hit_ratio, 5),
            "fallbacks": dict(self.fallbacks),
            "fallback_reasons": dict(self.fallback_reasons),
            "fallback_rate": rounded(self.fallback_rate, 5),
            "compute_ms_per_1000": rounded(self.compute_ms_per_1000),
        }
