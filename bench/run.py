"""`make bench`: raw onnxruntime against Turnout end to end, on the two benchmark MLPs and the
`sentiment` demo pipeline (three stages: BYTES text in, a label out).

    .venv/bin/python bench/run.py [--seconds 10] [--web-workers 2] [--url http://host:port]

1. Raw limit: each model in onnxruntime in this process (default session options,
   CPU provider): samples/s at batch 1 and 64, and the batch-1 latency p50; again
   after the stack stops, keeping the better figures.
2. Registers bench-mlp-{small,large} and the bench-sentiment pipeline (batching
   on, max_batch_size 64) and their -nobatch twins (max_batch_size 1) through the
   registry services, validated inline, serving as production, and an API key for bench-* without an effective
   rate limit (ops.benchmark.py).
3. Starts its own stack unless --url is given: gunicorn with uvicorn workers (2 by
   default) and one Celery worker serving `bench-*` (1 onnxruntime intra-op thread
   by default), under the private Redis prefix and Celery queue `turnout-bench` and
   its own Prometheus directory, so a running dev stack is never touched.
   Everything is stopped, and its Redis keys removed, at the end, on errors and on
   Ctrl-C.
4. Loads each (model, batching on/off, concurrency 1/64) cell with wrk and
   bench/post.lua (batch-1 requests), after a short warm-up run, recording the CPU
   each process used and the stack's own stage times.
5. Prints one table (and the time/CPU table) and writes them as markdown to
   bench/out/latest.md. docs/benchmarks.md explains the defaults and the results.

--tracing runs the stack with OpenTelemetry tracing on (TURNOUT_TRACING), sampling
--tracing-ratio of the requests (default 0.01), exporting to a dummy OTLP/HTTP
receiver in this process that answers 200 to everything: compare with a run without
it for what tracing costs (docs/benchmarks.md).

--cache measures the response cache instead of the usual cells (bench/cache.py): per
model, batching on, with cache_ttl_seconds set, a hit (the same body every request)
against a miss (every request a new input) at concurrency 64.
--priority measures priority tiers instead (bench/priority_tiers.py): the high
tier's p99 alone and while low-tier clients overload the same model.

--profile records py-spy (pip install py-spy; not a project dependency) on the
web and worker processes during each model's batching-on c64 cell, as collapsed
stacks in bench/out/; bench/profile_summary.py summarises them.

This file parses the options and runs the steps; the modules beside it hold the parts:
results.py (the figures), raw.py (onnxruntime alone), stack.py (our stack and requests to it),
load.py (wrk, h2load and CPU metering) and report.py (the tables and bench/out/latest.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

for folder in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parent):  # the project, then bench/
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import cache as bench_cache  # noqa: E402 (bench/cache.py, beside this script)
import grpc_h2load  # noqa: E402 (bench/grpc_h2load.py)
import stack as bench_stack  # noqa: E402 (bench/stack.py: main() sets its API_KEY)
from load import (  # noqa: E402
    CpuMeter,
    StageMeter,
    cpu_text,
    measure_baseline,
    profiling,
    redis_server_pids,
    run_grpc,
    run_wrk,
    transport_floor,
    wait_quiet,
)
from raw import measure_raw, measure_raw_pipeline  # noqa: E402
from report import git_revision, machine, write_report  # noqa: E402
from results import CONCURRENCIES, OUT, BenchError, Cell, ModelResult  # noqa: E402
from stack import (  # noqa: E402
    PREFIX,
    OtlpSink,
    Stack,
    binary_body,
    check_answer,
    provider_of,
    register,
    request_body,
    setup_django,
    text_body,
    wait_ready,
)


# --- main ---------------------------------------------------------------------------
def batching_modes(text: str) -> list[str]:
    """--modes: "on", "off", "both" or a comma-separated list of them, in order, each once."""
    modes: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part not in ("on", "off", "both", ""):
            raise argparse.ArgumentTypeError(f"unknown batching mode {part!r}: give on, off or both")
        for mode in ("on", "off") if part == "both" else (part,) if part else ():
            if mode not in modes:
                modes.append(mode)
    if not modes:
        raise argparse.ArgumentTypeError("no batching mode: give on, off or both")
    return modes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each cell (default 3)")
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="seconds per raw onnxruntime measurement")
    parser.add_argument(
        "--grpc-in-web",
        action="store_true",
        help="serve gRPC inside the web processes (TURNOUT_GRPC_IN_WEB) instead of serve_grpc processes",
    )
    parser.add_argument(
        "--models",
        default="mlp_small,mlp_large,mlp_large_int8,sentiment",
        help="comma-separated: mlp_small, mlp_large, mlp_large_int8 (its INT8 variant), sentiment (the demo pipeline)",
    )
    parser.add_argument(
        "--modes",
        type=batching_modes,
        default="on,off",
        help="batching modes to measure, comma-separated: on, off, or both (on,off)",
    )
    parser.add_argument("--url", default="", help="use the stack at this URL instead of starting one")
    parser.add_argument(
        "--redis-prefix",
        default="",
        help=f"our own stack's Redis prefix and Celery queue (default {PREFIX}; give each benchmark "
        "running on one host its own), or with --url that stack's TURNOUT_REDIS_PREFIX, for catalog "
        "notices (default: the configured one)",
    )
    parser.add_argument(
        "--web-workers", type=int, default=2, help="gunicorn workers of our own stack (default 2; docs/benchmarks.md)"
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=1,
        help="TURNOUT_WORKER_INTRA_OP_THREADS for our own worker (default 1; 0: onnxruntime's choice, "
        "one thread per core; docs/benchmarks.md)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each measurement, wait up to this many seconds for other processes to go quiet (default 60)",
    )
    parser.add_argument(
        "--quiet-threshold", type=float, default=10.0, help="%% of one core counted as quiet (default 10)"
    )
    parser.add_argument("--log-level", default="", help="LOG_LEVEL of our own stack (default: as configured)")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for the models to be ready")
    parser.add_argument(
        "--tracing", action="store_true", help="our own stack with tracing on, exporting to a dummy OTLP receiver"
    )
    parser.add_argument(
        "--tracing-ratio", type=float, default=0.01, help="with --tracing: TURNOUT_TRACING_SAMPLE_RATIO (default 0.01)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the web and worker during each c64 (on) cell")
    parser.add_argument(
        "--cache",
        action="store_true",
        help="instead of the usual cells, the response cache's: hits and misses at concurrency 64 (bench/cache.py)",
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the per-request FastAPI baseline (bench/per_request.py) measured after our stack",
    )
    parser.add_argument(
        "--baseline-workers", type=int, default=2, help="uvicorn workers of the per-request baseline (default 2)"
    )
    parser.add_argument("--hold", action="store_true", help="keep our stack up after the run until Ctrl-C")
    parser.add_argument(
        "--priority",
        action="store_true",
        help="instead of the cells: the high tier's latency alone and under a low-tier flood (bench/priority_tiers.py)",
    )
    parser.add_argument("--priority-queue", type=int, default=256, help="with --priority: max_queue_size (256)")
    parser.add_argument("--priority-batch", type=int, default=16, help="with --priority: max_batch_size (16)")
    parser.add_argument("--priority-high-conc", type=int, default=8, help="with --priority: high-tier connections (8)")
    parser.add_argument(
        "--priority-low-conc", type=int, default=512, help="with --priority: low-tier connections (512)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    modes: list[str] = args.modes
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk (make bench installs it)")
    if args.priority:
        if args.url:
            raise BenchError("--priority registers its own model and keys and starts its own stack: no --url")
        import priority_tiers  # bench/, this script's folder

        return priority_tiers.run(args)
    if args.tracing and args.url:
        raise BenchError("--tracing configures our own stack; the stack at --url traces as it is configured")
    if not 0.0 <= args.tracing_ratio <= 1.0:
        raise BenchError(f"--tracing-ratio {args.tracing_ratio} is not between 0 and 1")
    OUT.mkdir(parents=True, exist_ok=True)

    prefix = args.redis_prefix or (PREFIX if not args.url else "")
    if prefix:
        os.environ["TURNOUT_REDIS_PREFIX"] = prefix
    setup_django(os.environ.get("TURNOUT_REDIS_PREFIX", "turnout"))
    from ops.benchmark import BENCH_MODELS, served_names

    unknown = [k for k in keys if k not in BENCH_MODELS]
    if unknown:
        raise BenchError(f"unknown model(s) {unknown}; choose from {sorted(BENCH_MODELS)}")

    # 1. The raw onnxruntime limit, before anything else runs (and again at the end).
    results: dict[str, ModelResult] = {}
    bodies: dict[str, Path] = {}
    artifacts: dict[str, bytes] = {}
    floors: dict[str, Cell] = {}  # each transport's own cost (transport_floor)
    for key in keys:
        spec = BENCH_MODELS[key]
        print(f"raw onnxruntime: {key} ...", flush=True)
        wait_quiet(args.quiet_wait, args.quiet_threshold)
        bodies[key] = OUT / f"body-{key}.json"
        if spec.build is None:
            results[key] = ModelResult(key, measure_raw_pipeline(args.raw_seconds))
            bodies[key].write_bytes(text_body())
            continue
        artifacts[key] = spec.build()
        results[key] = ModelResult(key, measure_raw(artifacts[key], spec.input_dim, args.raw_seconds))
        bodies[key].write_bytes(request_body(spec.input_dim, seed=7))

    # 2. The models, registered and ready to serve.
    print("registering the benchmark models ...", flush=True)
    bench_stack.API_KEY = register(keys, prefix or PREFIX)

    stack: Stack | None = None
    sink = OtlpSink() if args.tracing else None
    traced: dict[str, str] = {}
    if sink is not None:
        traced = {
            "TURNOUT_TRACING": "true",
            "TURNOUT_TRACING_SAMPLE_RATIO": str(args.tracing_ratio),
            "TURNOUT_TRACING_ENDPOINT": sink.url,
        }
    started = datetime.now(UTC)
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            stack = Stack(args.web_workers, args.intra_op_threads, args.log_level, traced, prefix, args.grpc_in_web)
            print(f"starting web ({args.web_workers} worker(s)) and worker on {stack.url} ...", flush=True)
            stack.start()
            url = stack.url
        wait_ready(url, served_names(keys), args.ready_timeout, stack)
        roles = {"redis": redis_server_pids()}
        if stack is not None:
            roles = {"web": stack.pids("web"), "worker": stack.pids("worker"), **roles}
            if "grpc" in stack.processes:
                roles["grpc"] = stack.pids("grpc")
        meter = CpuMeter(roles)
        stage_meter = StageMeter(OUT / "prometheus") if stack is not None else None

        # 3. The cells (or, with --cache, the response cache's).
        if args.cache:
            quiet = lambda: wait_quiet(args.quiet_wait, args.quiet_threshold)  # noqa: E731
            cache_figures = bench_cache.measure(
                url, keys, bodies, args.seconds, args.warmup, run_wrk, quiet, meter, bench_stack.API_KEY, modes
            )
        for key in keys if not args.cache else []:
            spec = BENCH_MODELS[key]
            for mode in modes:
                name = spec.name if mode == "on" else spec.nobatch_name
                check_answer(url, name, bodies[key].read_bytes(), spec.output_dim)
                if mode == "on":
                    results[key].provider = provider_of(url, name)
                target = f"{url}/v2/models/{name}/infer"
                for conc in CONCURRENCIES:
                    wait_quiet(args.quiet_wait, args.quiet_threshold)
                    if args.warmup > 0:
                        run_wrk(target, bodies[key], conc, args.warmup)
                    before = stage_meter.snapshot() if stage_meter else {}
                    with profiling(args.profile and mode == "on" and conc == 64, stack, key, args.seconds):
                        cell = run_wrk(target, bodies[key], conc, args.seconds, meter)
                    if stack is not None:
                        stack.check_alive()
                    if stage_meter is not None:
                        cell.stages = StageMeter.stages(before, stage_meter.snapshot(), name, args.seconds)
                    results[key].cells[(mode, conc)] = cell
                    print(
                        f"  {key:9} batching {mode:3} c{conc:<2}: {cell.rps:9.1f} req/s  "
                        f"p50 {cell.p50_ms:8.3f} ms  p99 {cell.p99_ms:8.3f} ms  cpu% {cpu_text(cell.cpu)}",
                        flush=True,
                    )
                if mode == "on" and spec.build is not None:
                    # The binary tensor extension (issue 20: at least 1.5x JSON for mlp_large at c64).
                    body, header_length = binary_body(spec.input_dim, seed=7)
                    binary_file = OUT / f"body-{key}.bin"
                    binary_file.write_bytes(body)
                    binary_env = {"BENCH_HEADER_LENGTH": str(header_length)}
                    wait_quiet(args.quiet_wait, args.quiet_threshold)
                    if args.warmup > 0:
                        run_wrk(target, binary_file, 64, args.warmup, extra_env=binary_env)
                    cell = run_wrk(target, binary_file, 64, args.seconds, meter, extra_env=binary_env)
                    results[key].cells[("binary", 64)] = cell
                    print(
                        f"  {key:9} binary      c64: {cell.rps:9.1f} req/s  "
                        f"p50 {cell.p50_ms:8.3f} ms  p99 {cell.p99_ms:8.3f} ms  cpu% {cpu_text(cell.cpu)}",
                        flush=True,
                    )
                if mode == "on" and stack is not None and spec.build is not None:
                    for conc in CONCURRENCIES:
                        wait_quiet(args.quiet_wait, args.quiet_threshold)
                        request = grpc_h2load.infer_request(name, spec.input_dim)
                        cell = run_grpc(stack.grpc_target, request, conc, args.seconds, meter, warmup=args.warmup)
                        stack.check_alive()
                        results[key].cells[("grpc", conc)] = cell
                        print(
                            f"  {key:9} gRPC raw    c{conc:<2}: {cell.rps:9.1f} req/s  "
                            f"p50 {cell.p50_ms:8.3f} ms  p99 {cell.p99_ms:8.3f} ms  cpu% {cpu_text(cell.cpu)}",
                            flush=True,
                        )
        if stack is not None and not args.cache and any(("grpc", 64) in r.cells for r in results.values()):
            wait_quiet(args.quiet_wait, args.quiet_threshold)
            floors.update(transport_floor(url, stack.grpc_target, args.seconds, meter))
            for transport, cell in floors.items():
                print(
                    f"  transport floor {transport:4} c64: {cell.rps:9.1f} req/s  cpu% {cpu_text(cell.cpu)}", flush=True
                )
        if args.hold and stack is not None:
            print(f"holding the stack at {stack.url}; Ctrl-C to stop", flush=True)
            while True:
                stack.check_alive()
                time.sleep(1)
    finally:
        if stack is not None:
            stack.stop()
        if sink is not None:
            sink.close()

    if args.baseline and not args.cache:
        measure_baseline(args, results, artifacts, bodies)

    for key in keys:
        print(f"raw onnxruntime again: {key} ...", flush=True)
        wait_quiet(args.quiet_wait, args.quiet_threshold)
        if key not in artifacts:
            again = measure_raw_pipeline(args.raw_seconds)
        else:
            again = measure_raw(artifacts[key], BENCH_MODELS[key].input_dim, args.raw_seconds)
        results[key].raw = results[key].raw.best(again)

    if args.cache:
        return bench_cache.report(cache_figures, started, machine(), git_revision(), args.seconds, OUT)
    write_report(args, results, floors, url, sink, stack is not None, started)
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
