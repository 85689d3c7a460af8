"""Load and what it costs: wrk (HTTP) and h2load (gRPC, bench/grpc_h2load.py) runs turned into
Cells, the CPU each process used during a cell (CpuMeter) and the stack's own stage times
(StageMeter), waiting for a quiet machine, the per-request baseline's cells, and py-spy profiles."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc_h2load
import stack as bench_stack  # for API_KEY, read at each call
from results import BENCH, CONCURRENCIES, OUT, BenchError, Cell, ModelResult
from stack import BIN, Stack, check_answer, free_port

POST_LUA = BENCH / "post.lua"


# --- CPU accounting ---------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    """All CPUs' busy time from /proc/stat (everything but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    return sum(values) - values[3] - values[4]


def _process_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def redis_server_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "redis-server":
                    pids.append(int(entry.name))
    return pids


def machine_busy(seconds: float = 1.0) -> float:
    """% of one core the whole machine used over `seconds`."""
    before, started = _busy_ticks(), time.monotonic()
    time.sleep(seconds)
    return (_busy_ticks() - before) * 100.0 / (CLOCK_TICKS * (time.monotonic() - started))


def wait_quiet(max_wait: float, threshold: float) -> float:
    """Wait (up to max_wait seconds) until the machine, our idle stack included, is nearly idle.

    Other processes on a 2-core machine change every number here; the CPU table
    reports how much they took during each cell either way."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy(0.5)
    announced = False
    while busy > threshold and time.monotonic() < deadline:
        if not announced:
            print(f"  waiting for a quiet machine (now {busy:.0f}% of a core busy) ...", flush=True)
            announced = True
        busy = machine_busy(1.0)
    return busy


class CpuMeter:
    """CPU used during a cell by each part of the path, and by everything else on the machine."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles

    def snapshot(self) -> dict[str, float]:
        import resource

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        snap = {role: float(sum(_process_ticks(pid) for pid in pids)) for role, pids in self.roles.items()}
        snap["wrk"] = (children.ru_utime + children.ru_stime) * CLOCK_TICKS
        snap["_busy"] = float(_busy_ticks())
        snap["_time"] = time.monotonic()
        return snap

    @staticmethod
    def usage(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        elapsed = after["_time"] - before["_time"]
        scale = 100.0 / (CLOCK_TICKS * elapsed)
        used = {k: (after[k] - before[k]) * scale for k in before if not k.startswith("_")}
        busy = (after["_busy"] - before["_busy"]) * scale
        used["other"] = max(0.0, busy - sum(used.values()))
        used["total"] = busy
        return used


class StageMeter:
    """Where a request's time goes, from the stack's own Prometheus files (our own stack only).

    Per model, deltas over a cell of: the gateway's stage histograms (validation, queue
    wait, compute, total inside the gateway's infer handler) and the worker's rows per
    onnxruntime run. Empty when the metrics are not there (another stack, or renamed)."""

    WANTED = (
        "turnout_inference_stage_seconds_sum",
        "turnout_inference_stage_seconds_count",
        "turnout_worker_batch_size_sum",
        "turnout_worker_batch_size_count",
    )

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def snapshot(self) -> dict[tuple[str, str, str], float]:
        try:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(self.directory))
            values: dict[tuple[str, str, str], float] = {}
            for metric in registry.collect():
                for sample in metric.samples:
                    if sample.name in self.WANTED:
                        key = (sample.name, sample.labels.get("model", ""), sample.labels.get("stage", ""))
                        values[key] = values.get(key, 0.0) + sample.value
            return values
        except Exception:  # a benchmark aid only: never fail the run over it
            return {}

    @staticmethod
    def stages(
        before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float], model: str, seconds: float
    ) -> dict[str, float]:
        def delta(name: str, stage: str = "") -> float:
            key = (name, model, stage)
            return after.get(key, 0.0) - before.get(key, 0.0)

        out: dict[str, float] = {}
        for stage in ("validation", "queue", "compute", "total"):
            count = delta("turnout_inference_stage_seconds_count", stage)
            if count > 0:
                out[f"{stage}_ms"] = delta("turnout_inference_stage_seconds_sum", stage) / count * 1000
        runs = delta("turnout_worker_batch_size_count")
        if runs > 0:
            out["rows_per_run"] = delta("turnout_worker_batch_size_sum") / runs
            out["runs_per_s"] = runs / seconds
        return out


def cpu_text(cpu: dict[str, float]) -> str:
    return " ".join(f"{role} {value:.0f}" for role, value in cpu.items())


# --- gRPC (h2load, a C load generator as wrk is: bench/grpc_h2load.py) ---------------
_REPLY_SIZES: dict[tuple[str, str, bytes], int] = {}  # (target, method, request) -> one answer's size


def run_grpc(
    target: str,
    request: bytes,
    concurrency: int,
    seconds: float,
    meter: CpuMeter | None = None,
    method: str = grpc_h2load.INFER,
    warmup: float = 1.0,
) -> Cell:
    """`request` (a serialised message) sent as `method` on `concurrency` streams."""
    size_key = (target, method, request)
    if size_key not in _REPLY_SIZES:
        _REPLY_SIZES[size_key] = grpc_h2load.reply_bytes(target, method, request, bench_stack.API_KEY)
    before = meter.snapshot() if meter is not None else None
    try:
        figures = grpc_h2load.run(
            target, method, request, concurrency, seconds, bench_stack.API_KEY, _REPLY_SIZES[size_key], warmup=warmup
        )
    except grpc_h2load.H2LoadError as exc:
        raise BenchError(str(exc)) from exc
    cell = Cell(figures.rps, figures.p50_ms, figures.p99_ms, figures.requests, figures.mean_ms)
    if meter is not None and before is not None:
        cell.cpu = CpuMeter.usage(before, meter.snapshot())
    return cell


def transport_floor(url: str, grpc_target: str, seconds: float, meter: CpuMeter) -> dict[str, Cell]:
    """Each transport's own cost at c64, without the gateway's work: HTTP `GET /v2/health/live`
    (wrk) and gRPC ServerLive (h2load), on the same processes as the cells."""
    live = run_wrk(f"{url}/v2/health/live", None, 64, seconds, meter)
    return {"http": live, "grpc": run_grpc(grpc_target, b"", 64, seconds, meter, method=grpc_h2load.LIVE)}


# --- wrk ------------------------------------------------------------------------
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> Cell:
    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        if match is None:
            raise BenchError(f"cannot find {pattern!r} in wrk's output:\n{output}")
        return float(match.group(1))

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx is not None and int(non_2xx.group(1)) > 0:
        raise BenchError(f"wrk saw {non_2xx.group(1)} non-2xx responses:\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors is not None and any(int(n) for n in errors.groups()):
        raise BenchError(f"wrk saw socket errors ({errors.group(0)}):\n{output}")
    latency: dict[int, float] = {}
    for match in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE):
        latency[int(match.group(1))] = float(match.group(2)) * _UNITS[match.group(3)]
    if 50 not in latency or 99 not in latency:
        raise BenchError(f"no latency distribution in wrk's output (is --latency set?):\n{output}")
    mean = re.search(r"^\s+Latency\s+([\d.]+)(us|ms|s|m)\s", output, re.MULTILINE)
    return Cell(
        rps=number(r"Requests/sec:\s+([\d.]+)"),
        p50_ms=latency[50],
        p99_ms=latency[99],
        requests=int(number(r"(\d+) requests in")),
        mean_ms=float(mean.group(1)) * _UNITS[mean.group(2)] if mean else 0.0,
    )


def run_wrk(
    url: str,
    body_file: Path | None,
    concurrency: int,
    seconds: float,
    meter: CpuMeter | None = None,
    script: Path = POST_LUA,
    extra_env: dict[str, str] | None = None,
) -> Cell:
    """wrk POSTing `body_file` through `script` (no body: plain GETs)."""
    before = meter.snapshot() if meter is not None else None
    args = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency"]
    args += ["-s", str(script), url] if body_file is not None else [url]
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file or ""), BENCH_API_KEY=bench_stack.API_KEY, **(extra_env or {}))
    done = subprocess.run(  # noqa: S603 (wrk, our arguments)
        args, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    cell = parse_wrk(done.stdout)
    if meter is not None and before is not None:
        cell.cpu = CpuMeter.usage(before, meter.snapshot())
    return cell


def measure_baseline(
    args: argparse.Namespace, results: dict[str, ModelResult], artifacts: dict[str, bytes], bodies: dict[str, Path]
) -> None:
    """The per-request FastAPI server (bench/per_request.py) on the same bodies and concurrencies,
    in this run, after our stack has stopped: the peer the c64 and c1 goals are ratios against."""
    from per_request import PerRequestServer  # bench/, this script's folder

    from ops.benchmark import BENCH_MODELS

    if not artifacts:
        return
    with PerRequestServer(artifacts, OUT / "baseline-models", free_port(), workers=args.baseline_workers) as server:
        meter = CpuMeter({"baseline": server.pids()})
        for key in artifacts:
            for style, root in (("per-request", server.url), ("lean", f"{server.url}/lean")):
                check_answer(root, key, bodies[key].read_bytes(), BENCH_MODELS[key].output_dim)
                target = f"{root}/v2/models/{key}/infer"
                for conc in CONCURRENCIES:
                    wait_quiet(args.quiet_wait, args.quiet_threshold)
                    if args.warmup > 0:
                        run_wrk(target, bodies[key], conc, args.warmup)
                    cell = run_wrk(target, bodies[key], conc, args.seconds, meter)
                    (results[key].baseline if style == "per-request" else results[key].lean)[conc] = cell
                    print(
                        f"  {key:9} {style:11} c{conc:<2}: {cell.rps:9.1f} req/s  "
                        f"p50 {cell.p50_ms:8.3f} ms  p99 {cell.p99_ms:8.3f} ms  cpu% {cpu_text(cell.cpu)}",
                        flush=True,
                    )


# --- profiling --------------------------------------------------------------------
@contextlib.contextmanager
def profiling(enabled: bool, stack: Stack | None, label: str, seconds: float) -> Iterator[None]:
    if not enabled or stack is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(py_spy).is_file():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy (not a project dependency)")
    targets = [("web", pid) for pid in stack.pids("web")] + [("worker", pid) for pid in stack.pids("worker")]
    recorders = []
    for role, pid in targets:
        path = OUT / f"profile-{label}-{role}-{pid}.txt"
        args = [py_spy, "record", "--nonblocking", "--format", "raw", "-r", "100", "-d", str(max(1, int(seconds)))]
        args += ["-o", str(path), "--pid", str(pid)]
        recorders.append(
            subprocess.Popen(  # noqa: S603 (py-spy, our arguments)
                args, stdout=subprocess.DEVNULL, stderr=(OUT / f"py-spy-{role}-{pid}.log").open("wb")
            )
        )
    try:
        yield
    finally:
        for recorder in recorders:
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.terminate()
