"""`make drill`: sustained load on a private Turnout stack while its parts fail.

    .venv/bin/python bench/fault_drill.py [--clients 16] [--deadline-ms 2000] [--phase-seconds 10]

1. Starts a private Redis (its own port, no persistence: a restart loses every
   stream, as a Redis without persistence does) and, with Debian's
   pg_createcluster, a private PostgreSQL cluster (its own port, trust auth), so a
   restart touches nothing else on the machine. `--postgres-url` and
   `--postgres-restart` use another server instead.
2. Migrates, registers `bench-mlp-small` (validated, production) and an API key,
   then starts one web process (gunicorn, 2 uvicorn workers) and two Celery workers.
3. Keeps `--clients` closed-loop clients sending batch-1 V2 requests, each with a
   deadline (`parameters.timeout`), over keep-alive connections, through four
   phases of `--phase-seconds`: steady; `kill -9` of one worker; a Redis restart;
   a PostgreSQL restart.
4. Checks, and prints as a table (also bench/out/drill.md):
   - every request got exactly one response (an HTTP status; a connection that
     broke without one counts as a failure);
   - no request waited past its deadline + 1 s;
   - after Redis came back, requests succeeded again within 5 s.
   Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
BIN = Path(sys.executable).parent
PREFIX = "turnout-drill"
MODEL = "bench-mlp-small"
CLUSTER = "turnout-drill"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: object, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():  # type: ignore[operator]
                return True
        time.sleep(interval)
    return False


def run(args: list[str], env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
    if check and done.returncode != 0:
        raise SystemExit(f"drill: {' '.join(args[:4])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --- the services under the drill ------------------------------------------------
class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        run([*args, "--daemonize", "yes", "--logfile", str(OUT / "drill-redis.log")])
        if not wait_for(lambda: "PONG" in run(["redis-cli", "-p", str(self.port), "ping"], check=False), 10):
            raise SystemExit("drill: the private Redis did not start")

    def stop(self) -> None:
        run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False)
        wait_for(lambda: "PONG" not in run(["redis-cli", "-p", str(self.port), "ping"], check=False), 10)

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """A cluster of its own (Debian's postgresql-common tools), dropped at the end."""

    def __init__(self, url: str = "", restart_command: str = "") -> None:
        self.external = bool(url)
        self.restart_command = restart_command
        self.version = ""
        self.port = free_port()
        self.url = url or f"postgres://postgres@127.0.0.1:{self.port}/turnout_drill"

    def start(self) -> None:
        if self.external:
            return
        if shutil.which("pg_createcluster") is None:
            raise SystemExit("drill: pg_createcluster not found; pass --postgres-url and --postgres-restart")
        self.version = sorted(os.listdir("/usr/lib/postgresql"))[-1]
        run(["pg_dropcluster", "--stop", self.version, CLUSTER], check=False)
        run(["pg_createcluster", self.version, CLUSTER, "-p", str(self.port), "--", "--auth=trust"])
        run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, CLUSTER, "start"])
        run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", "CREATE DATABASE turnout_drill"])

    def restart(self) -> None:
        if self.external:
            run(["bash", "-c", self.restart_command])
        else:
            run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, CLUSTER, "restart", "-m", "fast"])

    def stop(self) -> None:
        if not self.external and self.version:
            run(["pg_dropcluster", "--stop", self.version, CLUSTER], check=False)


# --- the stack -------------------------------------------------------------------
class Stack:
    def __init__(self, redis_url: str, database_url: str) -> None:
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "CELERY_BROKER_URL": redis_url,
                "CELERY_TASK_DEFAULT_QUEUE": PREFIX,
                "TURNOUT_REDIS_PREFIX": PREFIX,
                "TURNOUT_WORKER_MODELS": MODEL,
                "TURNOUT_WORKER_HEARTBEAT_SECONDS": "0.5",
                "PROMETHEUS_MULTIPROC_DIR": str(OUT / "drill-prometheus"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def prepare(self) -> str:
        manage = [sys.executable, "manage.py"]
        run([*manage, "migrate", "--no-input", "-v", "0"], self.env)
        run([*manage, "bench_models", "--models", "mlp_small", "--queue", PREFIX], self.env)
        script = (
            "from django.contrib.auth import get_user_model\n"
            "from accounts import services\n"
            "user, _ = get_user_model().objects.get_or_create(username='drill')\n"
            "_, secret = services.create_key(user, name='drill', model_patterns=['*'], actions=['infer', 'read'],"
            " actor=None)\n"
            "services.set_limits(services.ApiKey.objects.get(name='drill', user=user), actor=None, plan=None,"
            " requests_per_window=1000000, window_seconds=1, burst=1000000)\n"
            "print(secret)\n"
        )
        return run([*manage, "shell", "-c", script], self.env).strip().splitlines()[-1]

    def start(self) -> None:
        shutil.rmtree(OUT / "drill-prometheus", ignore_errors=True)
        (OUT / "drill-prometheus").mkdir(parents=True)
        web = [str(BIN / "gunicorn"), "controlplane.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker"]
        web += ["--workers", "2", "--bind", f"127.0.0.1:{self.port}", "--graceful-timeout", "5"]
        self._spawn("web", web)
        for name in ("a", "b"):
            self.start_worker(name)

    def start_worker(self, name: str) -> None:
        worker = [str(BIN / "celery"), "-A", "controlplane", "worker", "--pool", "threads", "--concurrency", "2"]
        worker += ["--without-mingle", "--without-gossip", "--hostname", f"drill-{name}@%h", "--queues", PREFIX]
        self._spawn(f"worker-{name}", worker)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (OUT / f"drill-{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(  # noqa: S603 -- our own executables
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


# --- the load --------------------------------------------------------------------
@dataclass
class Outcome:
    sent: float  # seconds since the drill began
    seconds: float
    status: int  # 0: no response at all (the connection broke)
    error: str = ""


@dataclass
class Load:
    port: int
    key: str
    deadline_ms: int
    clients: int
    started: float = field(default_factory=time.monotonic)
    outcomes: list[Outcome] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self) -> bytes:
        data = [round(random.random(), 4) for _ in range(64)]  # noqa: S311 -- load, not secrets
        parameters = {"timeout": self.deadline_ms * 1000}
        request = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": data}]}
        return json.dumps({**request, "parameters": parameters}).encode()

    def client(self) -> None:
        connection: http.client.HTTPConnection | None = None
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"}
        while not self.stopping.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.deadline_ms / 1000 + 30)
            sent = time.monotonic()
            try:
                connection.request("POST", f"/v2/models/{MODEL}/infer", self.body(), headers)
                response = connection.getresponse()
                answer = response.read()
                error = "" if response.status == 200 else answer[:200].decode(errors="replace")
                outcome = Outcome(sent - self.started, time.monotonic() - sent, response.status, error)
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = Outcome(sent - self.started, time.monotonic() - sent, 0, type(exc).__name__)
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.05)
            with self.lock:
                self.outcomes.append(outcome)
            if outcome.status in (503, 429):
                time.sleep(0.05)  # a client honours Retry-After, roughly

    def now(self) -> float:
        return time.monotonic() - self.started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--deadline-ms", type=int, default=2000)
    parser.add_argument("--phase-seconds", type=float, default=10.0)
    parser.add_argument("--postgres-url", default="", help="use this server instead of a private cluster")
    parser.add_argument("--postgres-restart", default="", help="shell command that restarts that server")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    redis_server = PrivateRedis()
    postgres = PrivatePostgres(args.postgres_url, args.postgres_restart)
    stack = Stack(redis_server.url, postgres.url)
    events: dict[str, float] = {}
    try:
        redis_server.start()
        postgres.start()
        key = stack.prepare()
        stack.start()
        load = Load(stack.port, key, args.deadline_ms, args.clients)
        ready = wait_for(lambda: probe(stack.port, key) == 200, 120, 0.5)
        if not ready:
            raise SystemExit("drill: the stack never served the model; see bench/out/drill-*.log")
        load.started = time.monotonic()
        threads = [threading.Thread(target=load.client, daemon=True) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        phase = args.phase_seconds
        time.sleep(phase)
        events["kill -9 worker"] = load.now()
        stack.kill("worker-a")
        time.sleep(phase)
        events["Redis down"] = load.now()
        redis_server.stop()
        time.sleep(1.0)
        redis_server.start()
        events["Redis back"] = load.now()
        time.sleep(phase)
        events["PostgreSQL restart"] = load.now()
        postgres.restart()
        events["PostgreSQL back"] = load.now()
        time.sleep(phase)
        load.stopping.set()
        for thread in threads:
            thread.join(args.deadline_ms / 1000 + 35)
        events["end"] = load.now()
        return report(load, events, args.deadline_ms)
    finally:
        stack.stop()
        postgres.stop()
        redis_server.stop()


def probe(port: int, key: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]})
    connection.request("POST", f"/v2/models/{MODEL}/infer", body, {"Authorization": f"Bearer {key}"})
    status = connection.getresponse().status
    connection.close()
    return status


def report(load: Load, events: dict[str, float], deadline_ms: int) -> int:
    outcomes = sorted(load.outcomes, key=lambda o: o.sent)
    bounds = [("steady", 0.0, events["kill -9 worker"])]
    bounds.append(("worker killed", events["kill -9 worker"], events["Redis down"]))
    bounds.append(("Redis restart", events["Redis down"], events["PostgreSQL restart"]))
    bounds.append(("PostgreSQL restart", events["PostgreSQL restart"], events["end"]))
    limit = deadline_ms / 1000 + 1.0
    lines = ["| phase | requests | 200 | other answers | no answer | slowest s | over deadline + 1 s |"]
    lines.append("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for name, start, end in bounds:
        part = [o for o in outcomes if start <= o.sent < end]
        codes = Counter(o.status for o in part)
        others = ", ".join(f"{n} x {c}" for c, n in sorted(codes.items()) if c not in (0, 200)) or "none"
        slowest = max((o.seconds for o in part), default=0.0)
        late = sum(o.seconds > limit for o in part)
        lines.append(f"| {name} | {len(part):,} | {codes[200]:,} | {others} | {codes[0]} | {slowest:.2f} | {late} |")
    back = events["Redis back"]
    recovered = next((o.sent + o.seconds - back for o in outcomes if o.sent >= back and o.status == 200), None)
    no_answer = sum(o.status == 0 for o in outcomes)
    late = sum(o.seconds > limit for o in outcomes)
    checks = {
        "every request got exactly one response": no_answer == 0,
        f"none waited past its deadline + 1 s ({limit:.1f} s)": late == 0,
        "service back within 5 s of Redis returning": recovered is not None and recovered <= 5.0,
    }
    errors = Counter(f"{o.status} {o.error}" for o in outcomes if o.status != 200)
    if errors:
        lines.append("")
        lines.append("| answers other than 200 | count |")
        lines.append("| --- | ---: |")
        lines += [f"| {text} | {count} |" for text, count in errors.most_common(8)]
    lines.append("")
    lines.append(
        f"Redis back at {back:.1f} s; first success {recovered:.2f} s later."
        if recovered
        else "No success after Redis came back."
    )
    for check, ok in checks.items():
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {check}")
    text = "\n".join(lines)
    print(text)
    (OUT / "drill.md").write_text(text + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
