"""What a shadow costs the clients: p50 latency at concurrency 1 with and without a shadow rollout.

    .venv/bin/python bench/shadow_overhead.py [--requests 2000] [--block 250] [--width 256]

1. Registers `bench-shadow` in the development database through the registry
   services (validated inline): v1, the benchmark's small MLP (64 -> 256 -> 256
   -> 10), in production, and v2, the same architecture with other weights,
   to be the shadow. Idempotent: the artifacts are deterministic.
2. Starts its own stack: one gunicorn + uvicorn web process and one Celery
   worker serving `bench-shadow*`, under the private Redis prefix and Celery
   queue `turnout-bench-shadow`, API keys not required; stopped at the end.
3. Sends `--requests` sequential requests (one connection, kept alive) with the
   shadow and as many without, in alternating blocks of `--block` in the order
   off, on, on, off, ... so that drift in the machine's speed cancels out. The
   shadow rollout (fraction 1: every request copied) is started and stopped
   through `rollouts.services`, like the dashboard does; each switch is given
   time to reach the web process before its block.
   `--pause-ms` adds think time between requests.
4. Prints p50, p95 and mean latency of each side, the p50 ratio against the
   target (a shadow raises p50 at concurrency 1 by less than 5 %), and how many
   copies the shadow answered (read back from the gateway's figures in Redis).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
BIN = Path(sys.executable).parent
PREFIX = "turnout-bench-shadow"
QUEUE = "turnout-bench-shadow"
MODEL = "bench-shadow"
INPUT_DIM = 64
TARGET_RATIO = 1.05
SWITCH_SECONDS = 1.5  # a routing change reaches the gateways within a second

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class BenchError(Exception):
    pass


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    # Change notices (a rollout started or stopped) go to the channel of the stack under test.
    os.environ["TURNOUT_REDIS_PREFIX"] = PREFIX
    import django

    django.setup()


def register(width: int) -> tuple[Any, Any, Any]:
    """The model, its production version and the shadow version; any active rollout of it ended."""
    from django.contrib.auth import get_user_model

    from registry import services as registry
    from registry.demo_models import build_mlp
    from registry.models import RegisteredModel, VersionStatus
    from rollouts import services

    user, _ = get_user_model().objects.get_or_create(username="bench")
    model = RegisteredModel.objects.filter(name=MODEL).first() or registry.create_model(
        name=MODEL, actor=user, description="Shadow overhead benchmark (bench/shadow_overhead.py)."
    )
    versions = []
    for seed in (0, 1):
        artifact = build_mlp(INPUT_DIM, [width, width], 10, seed=seed)
        from io import BytesIO

        version = registry.upload_version(model, BytesIO(artifact), actor=user).version
        if version.status != VersionStatus.READY:
            job = version.validation_jobs.order_by("-created_at").first()
            assert job is not None, "an upload always has a validation job"
            registry.run_validation(job.pk)
            version.refresh_from_db()
        if version.status != VersionStatus.READY:
            raise BenchError(f"{MODEL} v{version.number} is {version.status}: {version.status_reason}")
        versions.append(version)
    champion, shadow = versions
    if (active := services.active_rollout(model)) is not None:
        services.abort(active, actor=user, reason="bench/shadow_overhead.py starting")
    registry.set_alias(model, registry.PRODUCTION, champion, actor=user)
    return user, champion, shadow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def stack(port: int) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One web process and one worker, private to this benchmark."""
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "TURNOUT_REDIS_PREFIX": PREFIX,
            "TURNOUT_WORKER_MODELS": f"{MODEL}*",
            "TURNOUT_REQUIRE_API_KEY": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    commands = {
        "worker": [
            str(BIN / "celery"),
            *("-A", "controlplane", "worker", "--pool", "threads", "--concurrency", "1"),
            *("--without-mingle", "--without-gossip", "--without-heartbeat", "--hostname", "bench-shadow@%h"),
            *("--queues", QUEUE, "--loglevel", "WARNING"),
        ],
        "web": [
            str(BIN / "gunicorn"),
            "controlplane.asgi:application",
            *("--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "1"),
            *("--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5"),
        ],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in commands.items():
            with (OUT / f"shadow-{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(  # noqa: S603 (our own executables)
                    args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


class Client:
    """Sequential requests on one kept-alive connection."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        values = [round(0.01 * (i % 17) - 0.08, 3) for i in range(INPUT_DIM)]
        self.body = json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, INPUT_DIM], "data": values}]}
        ).encode()
        self.headers = {"Content-Type": "application/json", "X-Routing-Key": "bench-client"}

    def get(self, path: str) -> tuple[int, bytes]:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        return response.status, response.read()

    def infer(self) -> tuple[float, int, str]:
        started = time.perf_counter()
        self.connection.request("POST", f"/v2/models/{MODEL}/infer", self.body, self.headers)
        response = self.connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        return elapsed * 1000, response.status, response.getheader("x-turnout-arm") or ""


def wait_ready(port: int, versions: list[int], processes: dict[str, subprocess.Popen[bytes]]) -> Client:
    deadline = time.monotonic() + 90
    last = ""
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise BenchError(f"the {name} process exited ({process.returncode}); see bench/out/shadow-{name}.log")
        try:
            client = Client(port)
            answers = [client.get(f"/v2/models/{MODEL}/versions/{n}/ready") for n in versions]
            if all(status == 200 for status, _ in answers):
                return client
            last = "; ".join(body.decode(errors="replace")[:200] for _, body in answers)
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise BenchError(f"not ready after 90 s: {last}")


def shadow_copies(version: int) -> tuple[int, int]:
    """(copies answered, copies refused) by the shadow version, from the gateway's figures in Redis."""
    from controlplane.redis_client import get_redis

    client = get_redis()
    answered = refused = 0
    for key in client.scan_iter(match=f"{PREFIX}:obs:*:{MODEL}:{version}:shadow"):
        fields = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in client.hgetall(key).items()}
        answered += fields.get("c:200", 0)
        refused += fields.get("n", 0) - fields.get("c:200", 0)
    return answered, refused


def forget_copies(version: int) -> None:
    from controlplane.redis_client import get_redis

    client = get_redis()
    for key in client.scan_iter(match=f"{PREFIX}:obs:*:{MODEL}:{version}:shadow"):
        client.delete(key)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests measured on each side")
    parser.add_argument("--block", type=int, default=250, help="requests per block before switching")
    parser.add_argument("--width", type=int, default=256, help="hidden width of both MLPs")
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=0.0,
        help="think time between requests (default none: each request leaves as the previous answer arrives, "
        "while that request's shadow copy is still running)",
    )
    args = parser.parse_args()

    setup_django()
    from django.db import connections

    from rollouts import services

    user, champion, shadow = register(args.width)
    forget_copies(shadow.number)
    connections.close_all()
    port = free_port()
    latencies: dict[str, list[float]] = {"off": [], "on": []}
    blocks = max(1, args.requests // args.block)
    # off, on, on, off, off, on, ...: each side sees early and late blocks alike.
    order = [("off", "on") if pair % 2 == 0 else ("on", "off") for pair in range(blocks)]
    with stack(port) as processes:
        client = wait_ready(port, [champion.number, shadow.number], processes)
        print(f"{MODEL}: v{champion.number} in production, v{shadow.number} as the shadow; warming up ...", flush=True)
        for _ in range(300):
            client.infer()
        rollout = None
        for pair in order:
            for side in pair:
                if side == "on" and rollout is None:
                    rollout = services.start_shadow(champion.model, shadow, actor=user, fraction=1.0)
                elif side == "off" and rollout is not None:
                    services.stop_experiment(rollout, actor=user)
                    rollout = None
                connections.close_all()
                time.sleep(SWITCH_SECONDS)
                for _ in range(20):  # the first requests after a switch reload the routing
                    client.infer()
                for _ in range(args.block):
                    if args.pause_ms:
                        time.sleep(args.pause_ms / 1000)
                    ms, status, arm = client.infer()
                    if status != 200 or arm != "champion":
                        raise BenchError(f"a request got {status} from arm {arm!r}")
                    latencies[side].append(ms)
            print(f"  {sum(len(v) for v in latencies.values())} requests measured", flush=True)
        if rollout is not None:
            services.stop_experiment(rollout, actor=user)
        time.sleep(1.5)  # the last copies and the recorder's flush
        answered, refused = shadow_copies(shadow.number)

    off, on = latencies["off"], latencies["on"]
    print()
    print(f"{'':10}{'requests':>10}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for name, values in (("no shadow", off), ("shadow", on)):
        print(
            f"{name:10}{len(values):>10}{percentile(values, 50):>10.3f}"
            f"{percentile(values, 95):>10.3f}{statistics.fmean(values):>10.3f}"
        )
    ratio = percentile(on, 50) / percentile(off, 50)
    verdict = "PASS" if ratio < TARGET_RATIO else "FAIL"
    print()
    print(
        f"p50 with / without the shadow: {ratio:.3f} ({(ratio - 1) * 100:+.1f} %), target < {TARGET_RATIO}: {verdict}"
    )
    print(f"shadow copies answered: {answered} of the {len(on)}+ requests sent with it on; refused: {refused}")
    return 0 if ratio < TARGET_RATIO else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench/shadow_overhead.py: {exc}", file=sys.stderr)
        sys.exit(2)
