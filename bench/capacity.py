"""CPU per request of each piece (web, worker, Redis) for the capacity figures in
docs/operations.md ("Capacity: how far one core goes").

    .venv/bin/python bench/capacity.py [--seconds 15] [--concurrency 64] [--cluster]

It starts a private redis-server on a free port, then `bench/run.py --hold` (its own
gunicorn + Celery worker stack, batching on) against it, and for each demo model runs
`wrk -c<concurrency>` for `--seconds`, reading the CPU the web processes and the worker
used from /proc and Redis's own from `INFO cpu`, before and after. CPU-seconds per
request hold up on a busy shared machine far better than requests per second do: the
figures it prints are per request, and what one core of each would carry at that cost.

With `--cluster`, Redis is a Redis Cluster of three primaries on loopback ports instead
(its CPU summed over them), and Celery's broker a plain redis-server of its own: what a
cluster costs per request against one server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
TICKS = os.sysconf("SC_CLK_TCK")
MODELS = {"mlp_small": "bench-mlp-small", "mlp_large": "bench-mlp-large"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process under `root`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                with contextlib.suppress(OSError):
                    found[child] = (Path(f"/proc/{child}/cmdline").read_text()).replace("\0", " ")
                frontier.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def redis_cpu(clients: list[redis.Redis]) -> float:
    total = 0.0
    for client in clients:
        info = client.info("cpu")
        total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return total


def redis_commands(clients: list[redis.Redis]) -> int:
    return sum(int(client.info("stats")["total_commands_processed"]) for client in clients)


def start_redis(directory: Path, *extra: str) -> tuple[subprocess.Popen[bytes], redis.Redis, int]:
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)]
    server = subprocess.Popen(  # noqa: S603 (our own arguments)
        ["redis-server", *args, *extra],  # noqa: S607 (the redis-server on PATH, as the tests use)
        stdout=(directory / "redis.log").open("wb"),
        start_new_session=True,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            return server, client, port
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"capacity: a redis-server on port {port} did not start") from None
            time.sleep(0.2)


def start_cluster(directory: Path) -> tuple[list[subprocess.Popen[bytes]], list[redis.Redis], str]:
    """Three primaries, no replicas: the slots spread by `redis-cli --cluster create`."""
    started = [
        start_redis(directory / f"node{i}", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-port", str(free_port()))
        for i in range(3)
    ]  # fmt: skip
    nodes = [f"127.0.0.1:{port}" for _, _, port in started]
    subprocess.run(  # noqa: S603 (our own arguments)
        ["redis-cli", "--cluster", "create", *nodes, "--cluster-yes"],  # noqa: S607
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    clients = [client for _, client, _ in started]
    deadline = time.monotonic() + 60
    while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients):
        if time.monotonic() > deadline:
            raise SystemExit("capacity: the cluster did not form")
        time.sleep(0.25)
    return [server for server, _, _ in started], clients, "redis+cluster://" + ",".join(nodes)


def machine_busy_seconds() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--models", default="mlp_small,mlp_large")
    parser.add_argument("--cluster", action="store_true", help="Redis Cluster of three primaries instead of one server")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    directory = Path(tempfile.mkdtemp(prefix="turnout-capacity-"))
    servers: list[subprocess.Popen[bytes]] = []
    if args.cluster:
        servers, clients, url = start_cluster(directory)
        broker, _, broker_port = start_redis(directory / "broker")
        servers.append(broker)
        env = dict(os.environ, REDIS_URL=url, CELERY_BROKER_URL=f"redis://127.0.0.1:{broker_port}/0")
    else:
        server, client, port = start_redis(directory / "redis")
        servers, clients = [server], [client]
        env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    bench = subprocess.Popen(  # noqa: S603 (our own script)
        [sys.executable, str(ROOT / "bench/run.py"), "--models", ",".join(models), "--modes", "on", "--seconds", "1",
         "--warmup", "1", "--raw-seconds", "0.5", "--quiet-wait", "0", "--redis-prefix", "turnout-capacity", "--hold"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        url = ""
        assert bench.stdout is not None
        for line in bench.stdout:
            print(line, end="", file=sys.stderr)
            found = re.search(r"holding the stack at (\S+);", line)
            if found:
                url = found.group(1)
                break
        if not url:
            raise SystemExit("capacity: bench/run.py did not hold its stack")
        processes = descendants(bench.pid)
        web = [p for p, cmd in processes.items() if "gunicorn" in cmd and "uvicorn" in cmd]
        workers = [p for p, cmd in processes.items() if "celery" in cmd and " worker" in cmd]
        key = re.search(r'"api_key":\s*"([^"]+)"', (ROOT / "var/bench-key.json").read_text())
        where = "a Redis Cluster of 3 primaries" if args.cluster else "one Redis server"
        print(f"\nwrk -c{args.concurrency} for {args.seconds:g} s per model, batching on, {where}; CPU per request:\n")
        print("| model | req/s | web µs/req | worker µs/req | Redis µs/req | Redis commands/req | machine busy % |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for model in models:
            body = OUT / f"body-{model}.json"
            command = ["wrk", "-t1", f"-c{args.concurrency}", f"-d{args.seconds:g}s", "--timeout", "10s",
                       "-s", str(ROOT / "bench/post.lua"), f"{url}/v2/models/{MODELS[model]}/infer"]  # fmt: skip
            wrk_env = dict(os.environ, BENCH_BODY_FILE=str(body), BENCH_API_KEY=key.group(1) if key else "")
            warm = [*command[:3], "-d3s", *command[4:]]
            subprocess.run(warm, env=wrk_env, capture_output=True, check=True)  # noqa: S603 (wrk, our arguments)
            before = (cpu_seconds(web), cpu_seconds(workers), redis_cpu(clients), machine_busy_seconds(), time.time())
            commands_before = redis_commands(clients)
            out = subprocess.run(command, env=wrk_env, capture_output=True, text=True, check=True).stdout  # noqa: S603
            after = (cpu_seconds(web), cpu_seconds(workers), redis_cpu(clients), machine_busy_seconds(), time.time())
            commands = redis_commands(clients) - commands_before
            total = re.search(r"(\d+) requests in", out)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if not total or errors:
                raise SystemExit(f"capacity: wrk failed or saw errors:\n{out}")
            requests = int(total.group(1))
            per = [(a - b) * 1e6 / requests for a, b in zip(after[:3], before[:3], strict=True)]
            busy = (after[3] - before[3]) * 100 / (after[4] - before[4])
            print(
                f"| {model} | {requests / args.seconds:,.0f} | {per[0]:,.0f} | {per[1]:,.0f} | {per[2]:,.0f} "
                f"| {commands / requests:.2f} | {busy:.0f} |"
            )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            bench.wait(60)
        for server in servers:
            server.terminate()
            server.wait(15)


if __name__ == "__main__":
    main()
