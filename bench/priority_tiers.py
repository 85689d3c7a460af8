"""`bench/run.py --priority`: does the high tier keep its latency while the low tier
floods the same model? (issue 15, priority levels by client tier)

1. Registers `bench-priority` (the benchmark's large MLP, batching on:
   max_batch_size --priority-batch, 16 by default, since a high request may wait
   behind the batch already running; max_queue_delay_ms 2; max_queue_size
   --priority-queue, 256 by default, so low is refused past 128 queued), and two API keys on the
   plans `bench-high` and `bench-low` (priority high and low, no effective rate
   limit). The keys are revoked at the end.
2. Starts the benchmark's own stack (bench/stack.py's Stack: gunicorn with uvicorn
   workers, one Celery worker, a private Redis prefix).
   The low tier's clients honour Retry-After: after a 503 a connection waits 1 s
   (bench/post_backoff.lua), so they overload the model's queue rather than the
   web processes.
3. High tier alone: wrk at --priority-high-conc connections (8) for --seconds,
   batch-1 requests with the high key: p50/p99. Then the same while wrk floods the
   model with the low key at --priority-low-conc connections (512), started a few
   seconds before so the queue is at the low level's cap. Then the high tier alone
   once more, so drift in the machine's speed shows; the ratio is taken against the
   lower of the two unloaded p99s. Last, a control: the same clients with the low
   key during the same flood, which is what they would get without levels.
4. Prints and writes bench/out/priority.md: both tiers' figures, the ratio against
   the target (high-tier p99 under overload at most 1.5x unloaded), and what the
   gateway counted per level (turnout_priority_requests: admitted, shed).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stack as bench_stack  # for API_KEY, which the requests read at each call
from load import POST_LUA, wait_quiet
from report import git_revision, machine
from results import OUT
from stack import PREFIX, Stack, check_answer, request_body, setup_django, wait_ready

MODEL = "bench-priority"
TARGET_RATIO = 1.5
LOW_WARMUP_SECONDS = 3.0
BACKOFF_LUA = Path(__file__).resolve().parent / "post_backoff.lua"
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class Load:
    """One wrk run: latency of the answers, and how many were not 200."""

    requests: int
    non_2xx: int
    rps: float
    p50_ms: float
    p99_ms: float


def parse(output: str) -> Load:
    def number(pattern: str, default: float | None = None) -> float:
        match = re.search(pattern, output)
        if match is None:
            if default is not None:
                return default
            raise RuntimeError(f"cannot find {pattern!r} in wrk's output:\n{output}")
        return float(match.group(1))

    latency = {
        int(m.group(1)): float(m.group(2)) * UNITS[m.group(3)]
        for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    }
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors is not None and any(int(n) for n in errors.groups()):
        raise RuntimeError(f"wrk saw socket errors ({errors.group(0)}):\n{output}")
    return Load(
        requests=int(number(r"(\d+) requests in")),
        non_2xx=int(number(r"Non-2xx or 3xx responses:\s+(\d+)", 0.0)),
        rps=number(r"Requests/sec:\s+([\d.]+)"),
        p50_ms=latency[50],
        p99_ms=latency[99],
    )


def wrk(url: str, body: Path, key: str, connections: int, seconds: float, backoff: bool = False) -> Load:
    """`backoff`: the clients wait out Retry-After (1 s) after a 503 (bench/post_backoff.lua)."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency"]
    args += ["-s", str(BACKOFF_LUA if backoff else POST_LUA), url]
    env = dict(os.environ, BENCH_BODY_FILE=str(body), BENCH_API_KEY=key, BENCH_POST_LUA=str(POST_LUA))
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse(done.stdout)


def tier_keys() -> tuple[dict[str, str], list[Any]]:
    """A key on a high and on a low plan (no effective rate limit); the keys, to revoke."""
    from django.contrib.auth import get_user_model

    from accounts import services
    from accounts.models import Plan
    from ops.benchmark import BENCH_USER, UNLIMITED

    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER, defaults={"email": "bench@localhost"})
    secrets: dict[str, str] = {}
    keys = []
    for level in ("high", "low"):
        plan, _ = Plan.objects.update_or_create(name=f"bench-{level}", defaults={**UNLIMITED, "priority": level})
        key, secret = services.create_key(
            user, name=f"bench {level} tier", model_patterns=["bench-*"], actions=["infer", "read"], actor=None
        )
        services.set_limits(key, actor=None, plan=plan)
        secrets[level] = secret
        keys.append(key)
    return secrets, keys


def level_counts(prometheus_dir: Path) -> dict[tuple[str, str], float]:
    """turnout_priority_requests per (level, outcome), and the queue wait's sum and count
    per (level, "queue_sum"/"queue_count"), as the stack's processes wrote them."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(prometheus_dir))
    counts: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if family.name == "turnout_priority_requests" and sample.name.endswith("_total"):
                counts[(sample.labels["level"], sample.labels["outcome"])] = sample.value
            elif family.name == "turnout_priority_queue_seconds" and sample.name.endswith(("_sum", "_count")):
                counts[(sample.labels["level"], "queue_" + sample.name.rsplit("_", 1)[1])] = sample.value
    return counts


def queue_means(counts: dict[tuple[str, str], float]) -> str:
    means = []
    for level in ("high", "normal", "low"):
        n = counts.get((level, "queue_count"), 0.0)
        if n:
            means.append(f"{level} {1000 * counts.get((level, 'queue_sum'), 0.0) / n:.1f} ms")
    return ", ".join(means) or "none"


def run(args: argparse.Namespace) -> int:
    prefix = args.redis_prefix or PREFIX
    os.environ["TURNOUT_REDIS_PREFIX"] = prefix
    setup_django(prefix)
    from accounts import services
    from ops.benchmark import register
    from registry import demo_models

    serving = {
        "max_batch_size": args.priority_batch,
        "max_queue_delay_ms": 2.0,
        "max_queue_size": args.priority_queue,
    }
    print(register(MODEL, "Benchmark MLP for priority tiers.", demo_models.build_mlp_large(), serving), flush=True)
    secrets, keys = tier_keys()
    bench_stack.API_KEY = secrets["high"]
    body = OUT / "body-priority.json"
    OUT.mkdir(parents=True, exist_ok=True)
    body.write_bytes(request_body(512, seed=7))
    stack = Stack(args.web_workers, args.intra_op_threads, args.log_level, None, prefix)
    seconds = args.seconds
    high_conc, low_conc = args.priority_high_conc, args.priority_low_conc
    try:
        print(f"starting web ({args.web_workers} worker(s)) and worker on {stack.url} ...", flush=True)
        stack.start()
        wait_ready(stack.url, [MODEL], args.ready_timeout, stack)
        target = f"{stack.url}/v2/models/{MODEL}/infer"
        check_answer(stack.url, MODEL, body.read_bytes(), 1000)

        def high(label: str) -> Load:
            wait_quiet(args.quiet_wait, args.quiet_threshold)
            wrk(target, body, secrets["high"], high_conc, args.warmup)
            load = wrk(target, body, secrets["high"], high_conc, seconds)
            print(f"  high tier {label}: p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, {load.rps:.0f} req/s")
            return load

        before = high("alone")

        def flooded(key: str) -> tuple[Load, Load, dict[tuple[str, str], float]]:
            """The high tier's clients, sending with `key`, while the low tier floods."""
            low: list[Load] = []
            flood = threading.Thread(
                target=lambda: low.append(
                    wrk(target, body, secrets["low"], low_conc, LOW_WARMUP_SECONDS + seconds + 2, backoff=True)
                )
            )
            counted = level_counts(OUT / "prometheus")
            flood.start()
            time.sleep(LOW_WARMUP_SECONDS)
            load = wrk(target, body, key, high_conc, seconds, backoff=True)
            flood.join()
            counts = {k: v - counted.get(k, 0.0) for k, v in level_counts(OUT / "prometheus").items()}
            stack.check_alive()
            return load, low[0], counts

        loaded, flood_load, counts = flooded(secrets["high"])
        print(f"  high tier under the low flood: p50 {loaded.p50_ms:.2f} ms, p99 {loaded.p99_ms:.2f} ms")
        # The control: the same clients with a low key, as if there were no levels.
        control, _, _ = flooded(secrets["low"])
        print(f"  the same clients on the low tier: p50 {control.p50_ms:.2f} ms, p99 {control.p99_ms:.2f} ms")
        after = high("alone again")
    finally:
        stack.stop()
        for key in keys:
            services.revoke_key(key, actor=None)
    baseline = min(before.p99_ms, after.p99_ms)
    ratio = loaded.p99_ms / baseline
    lines = [
        f"# Priority tiers: {MODEL} (mlp_large), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}",
        "",
        f"max_batch_size {args.priority_batch}, max_queue_size {args.priority_queue} "
        f"(low refused past {args.priority_queue // 2} queued), low-tier clients wait 1 s after a 503, "
        f"high tier {high_conc} connections, low tier {low_conc} connections, {seconds:.0f} s per run, "
        f"{args.web_workers} web worker(s), revision {git_revision()}",
        "",
        "| run | high p50 ms | high p99 ms | high req/s |",
        "| --- | --- | --- | --- |",
        f"| high alone | {before.p50_ms:.2f} | {before.p99_ms:.2f} | {before.rps:.0f} |",
        f"| high + low flood | {loaded.p50_ms:.2f} | {loaded.p99_ms:.2f} | {loaded.rps:.0f} |",
        f"| high alone again | {after.p50_ms:.2f} | {after.p99_ms:.2f} | {after.rps:.0f} |",
        f"| control: the same clients with a low key + low flood | {control.p50_ms:.2f} | {control.p99_ms:.2f} "
        f"| {control.rps:.0f} ({control.non_2xx} of {control.requests} not 200) |",
        "",
        f"High-tier p99 under overload / unloaded: **{ratio:.2f}x** (target at most {TARGET_RATIO}x: "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}).",
        f"Low tier during the flood: {flood_load.requests} requests, {flood_load.non_2xx} not 200 "
        f"({100 * flood_load.non_2xx / max(1, flood_load.requests):.1f} %), answered p50 {flood_load.p50_ms:.2f} ms.",
        "Gateway counts during the flood (turnout_priority_requests): "
        + ", ".join(
            f"{level} {outcome} {value:.0f}"
            for (level, outcome), value in sorted(counts.items())
            if value and not outcome.startswith("queue_")
        )
        + f"; mean queue wait of answered requests: {queue_means(counts)}.",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    (OUT / "priority.md").write_text(text + "\n")
    return 0
