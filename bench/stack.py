"""The stack under test and how the benchmark talks to it: Django set up and the benchmark models
registered (setup_django, register); our own web, gRPC and worker processes (Stack) and a dummy
OTLP receiver for their traces (OtlpSink); the API key every request carries (API_KEY); HTTP
calls, waiting until the models are ready, checking an answer; and the request bodies."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from raw import SENTENCE
from results import OUT, ROOT, BenchError

BIN = Path(sys.executable).parent
PREFIX = "turnout-bench"  # our own stack's Redis prefix and Celery queue, unless --redis-prefix names others


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


# Set by main() once the key exists (by bench/priority_tiers.py: the high tier's), as
# `stack.API_KEY = ...`; read at each call, here and in load.py, so never imported by name.
API_KEY = ""


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
