"""How a variant (a quantized or smaller version) answers against its baseline (its parent) on
the same inputs, before it takes any traffic: agreement, differences, and speed at batch 1 and
at the largest batch. Runs inside the comparison child (variants/compare_child.py). No Django.

Inputs are generated from the signature as validation's smoke run makes them
(registry/validation.py `sample_tensor`: floats in [0, 1), integers 0 and 1), from a fixed seed,
so a comparison is repeatable. A classifier's agreement is the share of rows whose top class
(argmax over the last axis of a floating output) or whose label (an integer output) is the same;
every floating output also reports its largest and mean absolute difference.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from registry.signature import Signature
from registry.validation import sample_tensor

TIMING_SECONDS = 1.0  # per session and batch size
TIMING_MIN_RUNS = 5


def inputs_for(signature: Signature, rows: int, seed: int) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    batch = rows if signature.get("batch_dim") else None
    return {spec["name"]: sample_tensor(spec, batch, rng) for spec in signature["inputs"]}


def _run(session: ort.InferenceSession, feeds: dict[str, Any], chunk: int, batched: bool) -> list[np.ndarray]:
    """Every output over all rows, run `chunk` rows at a time."""
    names = [o.name for o in session.get_outputs()]
    if not batched:
        return [np.asarray(v) for v in session.run(names, feeds)]
    rows = next(iter(feeds.values())).shape[0]
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, rows, chunk):
        for index, value in enumerate(session.run(names, {k: v[start : start + chunk] for k, v in feeds.items()})):
            parts[index].append(np.asarray(value))
    return [np.concatenate(p, axis=0) for p in parts]


def output_agreement(name: str, baseline: np.ndarray, variant: np.ndarray) -> dict[str, Any]:
    """One output's figures: argmax or label agreement where it means something, and differences."""
    found: dict[str, Any] = {"name": name, "shape": list(baseline.shape)}
    if baseline.shape != variant.shape:
        found["error"] = f"shape {list(variant.shape)} against the baseline's {list(baseline.shape)}"
        return found
    if baseline.dtype.kind == "f" or variant.dtype.kind == "f":
        difference = np.abs(baseline.astype(np.float64) - variant.astype(np.float64))
        found["max_abs_diff"] = float(difference.max()) if difference.size else 0.0
        found["mean_abs_diff"] = float(difference.mean()) if difference.size else 0.0
        if baseline.ndim >= 2 and baseline.shape[-1] > 1:
            found["argmax_agreement"] = float(np.mean(baseline.argmax(-1) == variant.argmax(-1)))
    elif baseline.dtype.kind in "iub":
        found["label_agreement"] = float(np.mean(baseline == variant)) if baseline.size else 1.0
    else:  # strings
        found["label_agreement"] = float(np.mean(baseline == variant)) if baseline.size else 1.0
    return found


def timing(session: ort.InferenceSession, feeds: dict[str, Any], batch: int, batched: bool) -> dict[str, float]:
    """p50 latency and rows per second of runs of `batch` rows, for about TIMING_SECONDS."""
    sample = {k: v[:batch] for k, v in feeds.items()} if batched else feeds
    session.run(None, sample)  # warm-up
    times: list[float] = []
    ends = time.perf_counter() + TIMING_SECONDS
    while time.perf_counter() < ends or len(times) < TIMING_MIN_RUNS:
        started = time.perf_counter()
        session.run(None, sample)
        times.append(time.perf_counter() - started)
    times.sort()
    p50 = times[len(times) // 2]
    p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]
    return {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "rows_per_s": batch / p50 if p50 > 0 else 0.0}


def compare(
    variant: ort.InferenceSession,
    baseline: ort.InferenceSession,
    signature: Signature,
    max_batch_size: int,
    rows: int,
    seed: int,
) -> dict[str, Any]:
    batched = bool(signature.get("batch_dim"))
    feeds = inputs_for(signature, rows if batched else 1, seed)
    chunk = max(1, min(max_batch_size, rows))
    base_out = _run(baseline, feeds, chunk, batched)
    variant_out = _run(variant, feeds, chunk, batched)
    names = [o.name for o in baseline.get_outputs()]
    outputs = [output_agreement(n, b, v) for n, b, v in zip(names, base_out, variant_out, strict=True)]
    shares = [o[key] for o in outputs for key in ("argmax_agreement", "label_agreement") if key in o]
    batches = sorted({1, max_batch_size}) if batched else [1]
    return {
        "rows": rows if batched else 1,
        "seed": seed,
        "agreement": min(shares) if shares else None,
        "outputs": outputs,
        "speed": [
            {"batch": b, "baseline": timing(baseline, feeds, b, batched), "variant": timing(variant, feeds, b, batched)}
            for b in batches
        ],
    }
