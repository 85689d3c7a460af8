"""Mergeable latency histograms with a bounded relative error. No Django imports.

Log-spaced buckets in the manner of DDSketch: bucket `i` holds values in
(GAMMA^(i-1), GAMMA^i] milliseconds with GAMMA = (1 + ALPHA) / (1 - ALPHA).
Reporting a bucket by 2 GAMMA^i / (GAMMA + 1) puts any quantile within ALPHA of
a value in that bucket, relative: with ALPHA = 0.5 % the percentiles on the
dashboard stay well inside the 2 % the product promises. Histograms are dicts of bucket index to count, so merging
windows, versions or web processes is adding dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ALPHA = 0.005
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
# Everything below 1 µs lands in the first bucket.
MIN_MS = 0.001


def bucket(ms: float) -> int:
    return math.ceil(math.log(max(ms, MIN_MS)) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    return 2 * GAMMA**index / (GAMMA + 1)


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            total[index] = total.get(index, 0) + count
    return total


def quantiles(histogram: Mapping[int, int], qs: Iterable[float]) -> dict[float, float | None]:
    """Values at the given quantiles (0..1), by the nearest-rank definition."""
    wanted = sorted(qs)
    count = sum(histogram.values())
    if count == 0:
        return dict.fromkeys(wanted)
    result: dict[float, float | None] = {}
    indices = sorted(histogram)
    seen = 0
    position = 0
    for q in wanted:
        rank = max(1, math.ceil(q * count))
        while seen + histogram[indices[position]] < rank:
            seen += histogram[indices[position]]
            position += 1
        result[q] = bucket_value(indices[position])
    return result


def exact_quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile of raw values, for tests and benchmarks."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]
