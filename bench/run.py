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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = BENCH / "out"
POST_LUA = BENCH / "post.lua"
BIN = Path(sys.executable).parent
PREFIX = "turnout-bench"  # our own stack's Redis prefix and Celery queue, unless --redis-prefix names others
CONCURRENCIES = (1, 64)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import cache as bench_cache  # noqa: E402 (bench/cache.py, beside this script)
import grpc_h2load  # noqa: E402 (bench/grpc_h2load.py)


class BenchError(Exception):
    pass


# --- results ------------------------------------------------------------------
@dataclass
class Raw:
    b1_sps: float
    b64_sps: float
    b1_p50_ms: float
    b64_sps_1thread: float = 0.0  # context: the worker's session with one intra-op thread

    def best(self, other: Raw) -> Raw:
        """Per figure, the better of two measurements: other processes only ever slow it down."""
        return Raw(
            max(self.b1_sps, other.b1_sps),
            max(self.b64_sps, other.b64_sps),
            min(self.b1_p50_ms, other.b1_p50_ms),
            max(self.b64_sps_1thread, other.b64_sps_1thread),
        )


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    mean_ms: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # role -> % of one core during the cell
    stages: dict[str, float] = field(default_factory=dict)  # from the stack's own metrics: see StageMeter


@dataclass
class ModelResult:
    key: str
    raw: Raw
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)  # ("on"|"off", concurrency)
    provider: str = ""
    baseline: dict[int, Cell] = field(default_factory=dict)  # concurrency -> the per-request server's cell
    lean: dict[int, Cell] = field(default_factory=dict)  # concurrency -> the hand-tuned per-request server's

    def cell(self, mode: str, conc: int) -> Cell | None:
        return self.cells.get((mode, conc))


# --- raw onnxruntime ------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _timed_runs(session: Any, feed: dict[str, Any], seconds: float) -> tuple[float, list[float]]:
    """Samples per second and per-call latencies, after a short warm-up."""
    batch = next(iter(feed.values())).shape[0]
    warm_until = time.perf_counter() + min(1.0, seconds / 3)
    while time.perf_counter() < warm_until:
        session.run(["output"], feed)
    latencies: list[float] = []
    started = now = time.perf_counter()
    end = started + seconds
    while now < end:
        session.run(["output"], feed)
        latest = time.perf_counter()
        latencies.append(latest - now)
        now = latest
    return len(latencies) * batch / (now - started), latencies


SENTENCE = "What a great movie, I loved every minute of it"


def measure_raw_pipeline(seconds: float) -> Raw:
    """The sentiment pipeline's stages back to back in this process, as a worker runs them (the
    chain of registry/pipelines.py `execute`), with onnxruntime-extensions' operators."""
    import numpy as np
    import onnxruntime as ort

    from registry import custom_ops, demo_pipeline
    from registry.pipelines import StagePlan, execute, wire
    from registry.signature import extract_signature

    def sessions(threads: int) -> tuple[Any, dict[str, Any]]:
        plans, runners = [], {}
        for stage, _, build in demo_pipeline.SENTIMENT_STAGES:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            custom_ops.enable(options)
            session = ort.InferenceSession(build(), sess_options=options, providers=["CPUExecutionProvider"])
            plans.append(StagePlan(stage, extract_signature(session)))
            runners[stage] = lambda feeds, deadline, s=session: s.run(None, feeds)
        outputs = {out: f"{stage}.{tensor}" for out, (stage, tensor) in demo_pipeline.SENTIMENT_OUTPUTS.items()}
        return wire(plans, outputs), runners

    class Chain:
        def __init__(self, threads: int) -> None:
            self.wiring, self.runners = sessions(threads)

        def run(self, _names: Any, feed: dict[str, Any]) -> Any:
            return execute(self.wiring, self.runners, feed)

    one = {"text": np.array([SENTENCE], dtype=object)}
    many = {"text": np.array([SENTENCE] * 64, dtype=object)}
    chain = Chain(0)
    b1_sps, b1_latencies = _timed_runs(chain, one, seconds)
    b64_sps, _ = _timed_runs(chain, many, seconds)
    b64_single, _ = _timed_runs(Chain(1), many, seconds)
    return Raw(b1_sps, b64_sps, percentile(b1_latencies, 50) * 1000, b64_single)


def measure_raw(artifact: bytes, input_dim: int, seconds: float) -> Raw:
    """The model alone in this process: default session options (the bars' reference), and for
    context batch 64 with one intra-op thread, as the benchmark's worker runs it."""
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    one = {"input": rng.standard_normal((1, input_dim)).astype(np.float32)}
    many = {"input": rng.standard_normal((64, input_dim)).astype(np.float32)}
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    b1_sps, b1_latencies = _timed_runs(session, one, seconds)
    b64_sps, _ = _timed_runs(session, many, seconds)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    single = ort.InferenceSession(artifact, sess_options=options, providers=["CPUExecutionProvider"])
    b64_single, _ = _timed_runs(single, many, seconds)
    return Raw(b1_sps, b64_sps, percentile(b1_latencies, 50) * 1000, b64_single)


# --- registration ---------------------------------------------------------------
def setup_django(prefix: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    # Catalog change notices go to the channel of the stack under test.
    os.environ["TURNOUT_REDIS_PREFIX"] = prefix
    import django

    django.setup()


def register(keys: list[str], queue: str) -> str:
    """Register the models; the benchmark's API key."""
    from django.core.management import call_command
    from django.db import connections

    from ops.benchmark import bench_key

    call_command("bench_models", models=",".join(keys), queue=queue)
    key = bench_key()
    connections.close_all()
    return key


# --- the stack ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """One web process and one worker, private to the benchmark."""

    def __init__(
        self,
        web_workers: int,
        intra_op_threads: int | None,
        log_level: str = "",
        tracing: dict[str, str] | None = None,
        prefix: str = PREFIX,
        grpc_in_web: bool = False,
    ) -> None:
        self.web_workers = web_workers
        self.grpc_in_web = grpc_in_web
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{free_port()}"
        self.env = dict(os.environ)
        self.env.update(
            {
                "TURNOUT_REDIS_PREFIX": prefix,
                "TURNOUT_WORKER_MODELS": "bench-*",
                # Our own Prometheus files: a dev stack's /metrics must not count the benchmark.
                "PROMETHEUS_MULTIPROC_DIR": str(OUT / "prometheus"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if grpc_in_web:
            self.env.update({"TURNOUT_GRPC_IN_WEB": "true", "TURNOUT_GRPC_BIND": self.grpc_target})
        if log_level:
            self.env["LOG_LEVEL"] = log_level
        self.env.update(tracing or {})
        if intra_op_threads is not None:
            self.env["TURNOUT_WORKER_INTRA_OP_THREADS"] = str(intra_op_threads)
        self.worker_env = dict(self.env)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(OUT / "prometheus", ignore_errors=True)
        (OUT / "prometheus").mkdir()
        web = [
            str(BIN / "gunicorn"),
            "controlplane.asgi:application",
            "--worker-class",
            "uvicorn_worker.UvicornWorker",
            "--workers",
            str(self.web_workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--graceful-timeout",
            "5",
        ]
        worker = [
            str(BIN / "celery"),
            "-A",
            "controlplane",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "1",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--hostname",
            "bench@%h",
            "--queues",
            self.prefix,
            "--loglevel",
            self.env.get("LOG_LEVEL", "INFO"),
        ]
        # The gRPC transport: as many processes as gunicorn has workers, sharing its port (SO_REUSEPORT).
        grpc_server = [str(BIN / "python"), "manage.py", "serve_grpc", "--bind", self.grpc_target]
        grpc_server += ["--processes", str(self.web_workers)]
        commands = [("worker", worker), ("web", web)] + ([] if self.grpc_in_web else [("grpc", grpc_server)])
        for name, args in commands:
            log_path = OUT / f"{name}.log"
            self.logs[name] = log_path
            with log_path.open("wb") as log:
                self.processes[name] = subprocess.Popen(  # noqa: S603 (our own executables)
                    args,
                    cwd=ROOT,
                    env=self.worker_env if name == "worker" else self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise BenchError(
                    f"the {name} process exited with status {process.returncode}; "
                    f"last lines of {self.logs[name]}:\n{tail(self.logs[name])}"
                )

    def pids(self, name: str) -> list[int]:
        """The processes that do the work: gunicorn's workers (not its master), the Celery worker."""
        process = self.processes[name]
        if name in ("web", "grpc"):
            # serve_grpc's first process serves too, beside the ones it started; gunicorn's master does not.
            own = [process.pid] if name == "grpc" else []
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
            with contextlib.suppress(OSError):
                return own + [int(pid) for pid in children.read_text().split()]
            return own
        return [process.pid]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.forget()

    def forget(self) -> None:
        """Drop what the benchmark left in Redis: its prefix's keys and its Celery queue."""
        import redis

        from controlplane.redis_client import new_redis

        try:
            client = new_redis()
            # On a Redis Cluster the names start with a hash tag: `{prefix:...}` (dataplane/keys.py).
            pipe = client.pipeline(transaction=False)  # a DEL per key: a cluster refuses one across slots
            for pattern in (f"{self.prefix}:*", f"{{{self.prefix}:*"):
                for key in client.scan_iter(match=pattern, count=1000):
                    pipe.delete(key)
            pipe.execute()
            client.delete(self.prefix)
            client.close()
        except redis.RedisError as exc:
            print(f"bench: could not remove the {self.prefix}:* keys from Redis: {exc}", file=sys.stderr)


class OtlpSink:
    """An OTLP/HTTP endpoint that takes every export and answers 200 without reading it: the
    stack pays for tracing as it would against a real collector, the benchmark for nothing
    but the bytes it receives."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                self.rfile.read(length)
                sink.exports += 1
                sink.bytes += length
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-sink", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


API_KEY = ""  # set by main() once the key exists


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if API_KEY:
        headers["Authorization"] = f"Bearer {API_KEY}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 (http only)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_ready(url: str, names: list[str], timeout: float, stack: Stack | None) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    last = ""
    while pending:
        if stack is not None:
            stack.check_alive()
        name = pending[0]
        try:
            status, body = http("GET", f"{url}/v2/models/{name}/ready", timeout=2)
        except OSError as exc:
            status, body = 0, str(exc).encode()
        if status == 200:
            pending.pop(0)
            continue
        last = f"{name}: {status} {body[:300].decode(errors='replace')}"
        if time.monotonic() > deadline:
            raise BenchError(f"not ready after {timeout:.0f} s; last answer {last}")
        time.sleep(0.25)


def provider_of(url: str, name: str) -> str:
    status, body = http("GET", f"{url}/v2/models/{name}")
    if status != 200:
        return f"? ({status})"
    providers = json.loads(body).get("parameters", {}).get("execution_providers", {})
    return ", ".join(sorted(set(providers.values()))) or "none"


def request_body(input_dim: int, seed: int) -> bytes:
    import numpy as np

    values = np.random.default_rng(seed).standard_normal(input_dim).astype(np.float32)
    payload = {
        "inputs": [{"name": "input", "shape": [1, input_dim], "datatype": "FP32", "data": [float(v) for v in values]}]
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def binary_body(input_dim: int, seed: int) -> tuple[bytes, int]:
    """The same request in the binary tensor extension, the output asked for in binary too:
    the body and its JSON header's length (Inference-Header-Content-Length)."""
    import numpy as np

    values = np.random.default_rng(seed).standard_normal((1, input_dim)).astype(np.float32)
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, input_dim],
                "datatype": "FP32",
                "parameters": {"binary_data_size": values.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + values.tobytes(), len(head)


def text_body() -> bytes:
    payload = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [SENTENCE]}]}
    return json.dumps(payload, separators=(",", ":")).encode()


def check_answer(url: str, name: str, body: bytes, output_dim: int) -> None:
    """A test request answers 200 with the expected first output (output_dim 0: the sentiment pipeline's label)."""
    status, answer = http("POST", f"{url}/v2/models/{name}/infer", body, timeout=30)
    if status != 200:
        raise BenchError(f"{name}: a test request got {status}: {answer[:500].decode(errors='replace')}")
    outputs = json.loads(answer)["outputs"]
    if output_dim == 0:
        if outputs[0]["data"] != ["positive"]:
            raise BenchError(f"{name}: expected the label 'positive', got {outputs[0]}")
        return
    if outputs[0]["shape"] != [1, output_dim]:
        raise BenchError(f"{name}: expected an output of shape [1, {output_dim}], got {outputs[0]['shape']}")


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


# --- gRPC (h2load, a C load generator as wrk is: bench/grpc_h2load.py) ---------------
GRPC_TITLE = (
    "gRPC (h2load, raw_input_contents; c64: 8 connections of 8 streams) beside HTTP JSON (wrk), batching on, "
    "same run; the last row: each transport with no gateway work (GET /v2/health/live, ServerLive):"
)
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
        _REPLY_SIZES[size_key] = grpc_h2load.reply_bytes(target, method, request, API_KEY)
    before = meter.snapshot() if meter is not None else None
    try:
        figures = grpc_h2load.run(
            target, method, request, concurrency, seconds, API_KEY, _REPLY_SIZES[size_key], warmup=warmup
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


def grpc_rows(results: dict[str, ModelResult], floors: dict[str, Cell]) -> tuple[list[str], list[list[str]]]:
    """gRPC (h2load) beside HTTP JSON (wrk), batching on, the same run: batch-1 latency at c1,
    throughput at c64; then each transport alone (HTTP `GET /v2/health/live`, gRPC ServerLive)."""
    header = ["model", "HTTP c1 p50 ms", "gRPC c1 p50 ms", "HTTP c64 req/s", "gRPC c64 req/s", "gRPC/HTTP c64"]
    rows = []
    for key, result in results.items():
        http1, grpc1 = result.cell("on", 1), result.cell("grpc", 1)
        http64, grpc64 = result.cell("on", 64), result.cell("grpc", 64)
        if grpc1 is None or grpc64 is None:
            continue
        ratio = grpc64.rps / http64.rps if http64 is not None and http64.rps else None
        rows.append(
            [
                key,
                fmt(http1.p50_ms if http1 else None, 3),
                fmt(grpc1.p50_ms, 3),
                fmt(http64.rps if http64 else None, 0),
                fmt(grpc64.rps, 0),
                fmt(ratio, 2),
            ]
        )
    http_floor, grpc_floor = floors.get("http"), floors.get("grpc")
    if rows and http_floor is not None and grpc_floor is not None:
        rows.append(
            [
                "transport alone (live)",
                "",
                "",
                fmt(http_floor.rps, 0),
                fmt(grpc_floor.rps, 0),
                fmt(grpc_floor.rps / http_floor.rps if http_floor.rps else None, 2),
            ]
        )
    return header, rows


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
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file or ""), BENCH_API_KEY=API_KEY, **(extra_env or {}))
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


# --- the table ----------------------------------------------------------------------
@dataclass
class Bar:
    model: str
    text: str
    ok: bool | None  # None: not measured


def bars(results: dict[str, ModelResult]) -> list[Bar]:
    out: list[Bar] = []
    large = results.get("mlp_large")
    if large is not None:
        on64, on1, off1 = large.cell("on", 64), large.cell("on", 1), large.cell("off", 1)
        binary64 = large.cell("binary", 64)
        for share in (0.35, 0.30):  # an earlier issue's bar, and the hot-path issue's
            out.append(
                Bar(
                    "mlp_large",
                    f"c64 req/s >= {share:.2f} x raw b64 samples/s",
                    None if on64 is None else on64.rps >= share * large.raw.b64_sps,
                )
            )
        out.append(
            Bar(
                "mlp_large",
                "binary c64 >= 1.5 x JSON c64",
                None if on64 is None or binary64 is None else binary64.rps >= 1.5 * on64.rps,
            )
        )
        out.append(Bar("mlp_large", "c64 p99 < 100 ms", None if on64 is None else on64.p99_ms < 100))
        out.append(
            Bar(
                "mlp_large",
                "c1 p50 <= raw b1 p50 + 1.5 ms",
                None if on1 is None else on1.p50_ms <= large.raw.b1_p50_ms + 1.5,
            )
        )
        out.append(
            Bar(
                "mlp_large",
                "c1 p50 batching on <= 1.10 x batching off",
                None if on1 is None or off1 is None else on1.p50_ms <= 1.10 * off1.p50_ms,
            )
        )
    small = results.get("mlp_small")
    if small is not None:
        on64, on1 = small.cell("on", 64), small.cell("on", 1)
        out.append(Bar("mlp_small", "c64 >= 3,000 req/s", None if on64 is None else on64.rps >= 3000))
        out.append(Bar("mlp_small", "c1 p50 <= 1 ms", None if on1 is None else on1.p50_ms <= 1.0))
    # The hot-path goals against the per-request server measured in the same run.
    for key, slack_ms in (("mlp_small", 0.2), ("mlp_large", 0.5)):
        result = results.get(key)
        if result is None:
            continue
        on64, on1 = result.cell("on", 64), result.cell("on", 1)
        theirs64, theirs1 = result.baseline.get(64), result.baseline.get(1)
        out.append(
            Bar(
                key,
                "c64 req/s >= 2 x per-request c64",
                None if on64 is None or theirs64 is None else on64.rps >= 2 * theirs64.rps,
            )
        )
        out.append(
            Bar(
                key,
                f"c1 p50 <= per-request c1 p50 + {slack_ms} ms",
                None if on1 is None or theirs1 is None else on1.p50_ms <= theirs1.p50_ms + slack_ms,
            )
        )
    return out


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table_rows(results: dict[str, ModelResult]) -> tuple[list[str], list[list[str]]]:
    keys = list(results)
    header = ["", *keys]
    rows: list[list[str]] = []

    def row(label: str, getter: Any) -> None:
        rows.append([label, *[getter(results[k]) for k in keys]])

    row("raw b1 samples/s", lambda r: fmt(r.raw.b1_sps))
    row("raw b64 samples/s", lambda r: fmt(r.raw.b64_sps))
    row("raw b1 p50 ms", lambda r: fmt(r.raw.b1_p50_ms, 3))
    row("raw b64 samples/s, 1 intra-op thread", lambda r: fmt(r.raw.b64_sps_1thread))
    for mode, title in (("on", "batching on"), ("off", "batching off")):
        for conc in CONCURRENCIES:

            def cell_value(r: ModelResult, attr: str, mode: str = mode, conc: int = conc) -> str:
                cell = r.cell(mode, conc)
                return fmt(None if cell is None else getattr(cell, attr), 3 if attr != "rps" else 1)

            row(f"{title} c{conc} req/s", lambda r, f=cell_value: f(r, "rps"))
            row(f"{title} c{conc} p50 ms", lambda r, f=cell_value: f(r, "p50_ms"))
            row(f"{title} c{conc} p99 ms", lambda r, f=cell_value: f(r, "p99_ms"))

    def ratio_c64(r: ModelResult, mode: str) -> str:
        cell = r.cell(mode, 64)
        return "-" if cell is None else f"{cell.rps / r.raw.b64_sps:.2f}"

    def c1_over_raw(r: ModelResult) -> str:
        cell = r.cell("on", 1)
        return "-" if cell is None else f"{cell.p50_ms - r.raw.b1_p50_ms:+.3f}"

    def on_over_off(r: ModelResult) -> str:
        on, off = r.cell("on", 1), r.cell("off", 1)
        return "-" if on is None or off is None else f"{on.p50_ms / off.p50_ms:.2f}"

    row("c64 req/s / raw b64 (on)", lambda r: ratio_c64(r, "on"))
    row("c64 req/s / raw b64 (off)", lambda r: ratio_c64(r, "off"))

    def ratio_single(r: ModelResult) -> str:
        cell = r.cell("on", 64)
        return "-" if cell is None or not r.raw.b64_sps_1thread else f"{cell.rps / r.raw.b64_sps_1thread:.2f}"

    row("c64 req/s / raw b64 1-thread (on)", ratio_single)

    def binary(r: ModelResult) -> str:
        cell = r.cell("binary", 64)
        return fmt(None if cell is None else cell.rps, 1)

    def binary_over_json(r: ModelResult) -> str:
        ours, json_cell = r.cell("binary", 64), r.cell("on", 64)
        return "-" if ours is None or json_cell is None else f"{ours.rps / json_cell.rps:.2f}"

    row("binary extension c64 req/s (on)", binary)
    row("binary c64 / JSON c64 (on)", binary_over_json)
    row("c1 p50 - raw b1 p50 ms (on)", c1_over_raw)

    for label, attr in (("per-request", "baseline"), ("lean per-request", "lean")):

        def peer(r: ModelResult, conc: int, field: str, attr: str = attr) -> str:
            cell = getattr(r, attr).get(conc)
            return fmt(None if cell is None else getattr(cell, field), 3 if field != "rps" else 1)

        def over_peer(r: ModelResult, attr: str = attr) -> str:
            ours, theirs = r.cell("on", 64), getattr(r, attr).get(64)
            return "-" if ours is None or theirs is None else f"{ours.rps / theirs.rps:.2f}"

        def c1_minus_peer(r: ModelResult, attr: str = attr) -> str:
            ours, theirs = r.cell("on", 1), getattr(r, attr).get(1)
            return "-" if ours is None or theirs is None else f"{ours.p50_ms - theirs.p50_ms:+.3f}"

        row(f"{label} c64 req/s", lambda r, f=peer: f(r, 64, "rps"))
        row(f"{label} c1 p50 ms", lambda r, f=peer: f(r, 1, "p50_ms"))
        row(f"c64 req/s / {label} c64 (on)", over_peer)
        row(f"c1 p50 - {label} c1 p50 ms (on)", c1_minus_peer)
    row("c1 p50 on / off", on_over_off)
    row("execution provider", lambda r: r.provider or "-")
    for bar in bars(results):
        mark = "-" if bar.ok is None else ("PASS" if bar.ok else "MISS")
        rows.append([f"bar: {bar.text}", *[mark if k == bar.model else "" for k in keys]])
    return header, rows


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, line in enumerate([header, *rows]):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in rows]
    return "\n".join(lines)


def cpu_text(cpu: dict[str, float]) -> str:
    return " ".join(f"{role} {value:.0f}" for role, value in cpu.items())


def detail_rows(results: dict[str, ModelResult]) -> tuple[list[str], list[list[str]]]:
    """Per cell: where a request's time goes (means) and who used the CPU."""
    roles: list[str] = []
    for result in results.values():
        for cell in result.cells.values():
            roles += [r for r in cell.cpu if r not in roles]
    stage_columns = [
        ("validation_ms", "validate ms"),
        ("queue_ms", "queue ms"),
        ("compute_ms", "compute ms"),
        ("total_ms", "gateway ms"),
        ("rows_per_run", "rows/run"),
        ("runs_per_s", "runs/s"),
    ]
    header = ["cell", "mean ms", *[title for _, title in stage_columns], *[f"{r} %" for r in roles]]
    rows = []
    for key, result in results.items():
        for (mode, conc), cell in result.cells.items():
            stages = [fmt(cell.stages.get(name), 3 if name.endswith("_ms") else 1) for name, _ in stage_columns]
            cpu = [f"{cell.cpu.get(r, 0):.0f}" for r in roles]
            rows.append([f"{key} batching {mode} c{conc}", fmt(cell.mean_ms, 3), *stages, *cpu])
    return header, rows


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)  # noqa: S607
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)  # noqa: S607
    except OSError:
        return "unknown"
    revision = head.stdout.strip() or "unknown"
    return revision + (" with uncommitted changes" if dirty.stdout.strip() else "")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}"


# --- main ---------------------------------------------------------------------------
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
    parser.add_argument("--modes", default="on,off", help="batching modes to measure: on, off or both")
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
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk (make bench installs it)")
    if args.priority:
        if args.url:
            raise BenchError("--priority registers its own model and keys and starts its own stack: no --url")
        import priority_tiers  # bench/, this script's folder

        return priority_tiers.run(args, sys.modules[__name__])
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
    global API_KEY
    API_KEY = register(keys, prefix or PREFIX)

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
                url, keys, bodies, args.seconds, args.warmup, run_wrk, quiet, meter, API_KEY, modes
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
    header, rows = table_rows(results)
    import onnxruntime

    if args.url:
        stack_text = f"the stack at {url}"
    else:
        threads = str(args.intra_op_threads) if args.intra_op_threads else "0 (onnxruntime's choice)"
        stack_text = (
            f"own: gunicorn with {args.web_workers} uvicorn worker(s), "
            f"1 Celery worker (onnxruntime intra-op threads {threads}, not spinning); gRPC "
            + ("inside the web processes" if args.grpc_in_web else f"in {args.web_workers} serve_grpc process(es)")
        )
    tracing_text = "off"
    if sink is not None:
        tracing_text = (
            f"on, sampling {args.tracing_ratio:g} of requests, to a dummy OTLP receiver "
            f"({sink.exports} exports, {sink.bytes / 1024:.0f} KiB)"
        )
    about = [
        f"Turnout benchmark, {started:%Y-%m-%d %H:%M} UTC",
        f"machine: {machine()}; onnxruntime {onnxruntime.__version__}",
        f"stack: {stack_text}",
        f"load: wrk -t1, batch-1 requests with an API key, {args.seconds:g} s per cell after {args.warmup:g} s warm-up",
        f"tracing: {tracing_text}",
        "raw: onnxruntime, default session options (it picks the intra-op threads), CPU provider, "
        f"{args.raw_seconds:g} s per figure, best of a run before and one after the stack",
        f"code: {git_revision()}",
    ]
    print()
    print("\n".join(about))
    print()
    print(render_text(header, rows))
    detail_header, detail_table = detail_rows(results)
    detail_note = (
        "Where the time goes, per cell (means over the measured seconds). mean ms: wrk's mean latency; "
        "gateway ms: inside the gateway's infer handler (after HTTP parsing, key check and rate limit; "
        "before the response is written), of which validate ms (body parse and checks), queue ms "
        "(enqueued until its batch started running) and compute ms (the onnxruntime run); rows/run and "
        "runs/s: the worker's batches. CPU in % of one core "
        f"(the machine has {os.cpu_count()}); other: every other process on the machine"
        + (", the stack under test included." if args.url else ".")
    )
    grpc_header, grpc_table = grpc_rows(results, floors)
    grpc_markdown = render_markdown(grpc_header, grpc_table)
    if grpc_table:
        print(f"\n{GRPC_TITLE}\n")
        print(render_text(grpc_header, grpc_table))
    print(f"\n{detail_note}\n")
    print(render_text(detail_header, detail_table))
    worst = max((c.cpu.get("other", 0.0) for r in results.values() for c in r.cells.values()), default=0.0)
    if worst > 15 and stack is not None:
        print(f"\nwarning: other processes used up to {worst:.0f}% of a core during a cell; the numbers are disturbed")
    markdown = "\n".join(
        [
            *[f"{line}  " for line in about],
            "",
            render_markdown(header, rows),
            "",
            *([GRPC_TITLE, "", grpc_markdown, ""] if grpc_table else []),
            detail_note,
            "",
            render_markdown(detail_header, detail_table),
            "",
        ]
    )
    (OUT / "latest.md").write_text(markdown)
    (OUT / "latest.json").write_text(
        json.dumps(
            {
                k: {
                    "raw": vars(r.raw),
                    "provider": r.provider,
                    "cells": {f"{mode}-c{conc}": vars(c) for (mode, conc), c in r.cells.items()},
                    "per_request": {f"c{conc}": vars(c) for conc, c in r.baseline.items()},
                    "lean_per_request": {f"c{conc}": vars(c) for conc, c in r.lean.items()},
                }
                for k, r in results.items()
            },
            indent=2,
        )
    )
    print(f"\nwritten to {(OUT / 'latest.md').relative_to(ROOT)}")
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
