"""`bench/run.py --cache`: what the response cache buys, per model, at concurrency 64.

For each model and batching mode (--modes; off: the -nobatch twin), cache_ttl_seconds is set
on its production version through the registry service (the gateways hear of it at once), then:
- miss: every request a new input (bench/post_distinct.lua), so each one is looked up,
  not found, queued, computed and stored;
- hit: the same body every request (bench/post.lua), answered from the cache after the first;
each after a warm-up run of its own, c1 and c64. cache_ttl_seconds goes back to 0 at the end,
so later runs measure the cache off. The issue's target: hit throughput at c64 at least 3x
the miss's. Written to bench/out/cache.md and cache.json.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DISTINCT_LUA = BENCH / "post_distinct.lua"
TTL_SECONDS = 600
CONCURRENCIES = (1, 64)
# Each wrk run of misses starts its counter this far past the previous one's (more than a run
# sends), staying below 2**24, where FP32 stops telling consecutive integers apart.
COUNTER_STRIDE = 1_000_000


def set_ttl(name: str, ttl: int) -> None:
    from registry import services

    model = services.RegisteredModel.objects.get(name=name)
    version = services.serving_version(model)
    if version is None:
        raise RuntimeError(f"{name} has no production version")
    services.update_version(version, actor=None, cache_ttl_seconds=ttl)


def cache_header(url: str, body: bytes, api_key: str) -> str:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 (http only)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return str(response.headers.get("x-turnout-cache") or "")
    except urllib.error.HTTPError as exc:
        return f"status {exc.code}"


def wait_for_header(url: str, body: bytes, api_key: str, want: str, timeout: float = 10.0) -> None:
    """Until 20 requests in a row (so every web process) answer with the cache header `want`."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 20:
        seen = cache_header(url, body, api_key)
        streak = streak + 1 if seen == want else 0
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: x-turnout-cache is {seen!r}, not {want!r}, {timeout:g} s after the change")


def measure(
    url: str,
    keys: list[str],
    bodies: dict[str, Path],
    seconds: float,
    warmup: float,
    run_wrk: Callable[..., Any],
    wait_quiet: Callable[[], Any],
    meter: Any,
    api_key: str,
    modes: list[str],
) -> dict[str, dict[str, Any]]:
    from ops.benchmark import BENCH_MODELS

    figures: dict[str, dict[str, Any]] = {}
    counter = 0
    runs = [(key, mode) for key in keys for mode in modes]
    for key, mode in runs:
        name = BENCH_MODELS[key].name if mode == "on" else BENCH_MODELS[key].nobatch_name
        label = key if mode == "on" else f"{key} (batching off)"
        target = f"{url}/v2/models/{name}/infer"
        body = bodies[key].read_bytes()
        set_ttl(name, TTL_SECONDS)
        try:
            wait_for_header(target, body, api_key, "hit")  # the first stored it; then hits
            cells: dict[str, Any] = {}
            for kind in ("miss", "hit"):
                for conc in CONCURRENCIES:
                    script = DISTINCT_LUA if kind == "miss" else BENCH / "post.lua"
                    wait_quiet()
                    if warmup > 0:
                        counter += COUNTER_STRIDE
                        run_wrk(target, bodies[key], conc, warmup, None, script, {"BENCH_COUNTER_START": str(counter)})
                    counter += COUNTER_STRIDE
                    cell = run_wrk(
                        target, bodies[key], conc, seconds, meter, script, {"BENCH_COUNTER_START": str(counter)}
                    )
                    cells[f"{kind}-c{conc}"] = vars(cell)
                    cpu = " ".join(f"{role} {value:.0f}" for role, value in cell.cpu.items())
                    print(
                        f"  {label} cache {kind:4} c{conc:<2}: {cell.rps:9.1f} req/s  p50 {cell.p50_ms:8.3f} ms  "
                        f"p99 {cell.p99_ms:8.3f} ms  cpu% {cpu}",
                        flush=True,
                    )
            figures[label] = cells
        finally:
            set_ttl(name, 0)
    return figures


def report(
    figures: dict[str, dict[str, Any]], started: datetime, machine: str, revision: str, seconds: float, out: Path
) -> int:
    header = (
        "| model | miss c1 p50 ms | hit c1 p50 ms | miss c64 req/s (p99 ms) | hit c64 req/s (p99 ms) "
        "| hit/miss c64 | others' CPU, max % |"
    )
    lines = [
        f"Turnout response cache benchmark, {started:%Y-%m-%d %H:%M} UTC  ",
        f"machine: {machine}  ",
        f"load: wrk -t1, batch-1 requests with an API key, {seconds:g} s per cell after a warm-up; "
        "miss: every request a new input; hit: one input repeated  ",
        f"code: {revision}",
        "",
        header,
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, cells in figures.items():
        miss1, hit1, miss64, hit64 = (cells[c] for c in ("miss-c1", "hit-c1", "miss-c64", "hit-c64"))
        ratio = hit64["rps"] / miss64["rps"] if miss64["rps"] else float("nan")
        others = max(cells[c]["cpu"].get("other", 0.0) for c in cells)
        lines.append(
            f"| {key} | {miss1['p50_ms']:.2f} | {hit1['p50_ms']:.2f} | {miss64['rps']:,.0f} ({miss64['p99_ms']:.1f}) "
            f"| {hit64['rps']:,.0f} ({hit64['p99_ms']:.1f}) | {ratio:.2f}x | {others:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    (out / "cache.md").write_text(text)
    (out / "cache.json").write_text(json.dumps(figures, indent=2))
    print(f"written to {out / 'cache.md'}")
    return 0
