"""Start real Turnout processes (Celery workers) for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def process_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that talks to the same services as the tests."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "TURNOUT_REDIS_PREFIX": settings.TURNOUT["REDIS_PREFIX"],
            "TURNOUT_WORKER_HEARTBEAT_SECONDS": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class WorkerProcess:
    """`celery -A controlplane worker`, as the Procfile runs it."""

    def __init__(self, name: str, log_path: Path, queues: str | None = None, **env: str) -> None:
        args = [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--loglevel", "INFO"]
        args += ["--pool", "solo", "--hostname", f"{name}@%h", "--without-mingle", "--without-gossip"]
        args += ["--queues", queues or self.default_queue()]
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=process_env(**env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @staticmethod
    def default_queue() -> str:
        from controlplane.celery import app

        return str(app.conf.task_default_queue)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebProcess:
    """A web process as production runs it: the ASGI app under uvicorn."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        args = [sys.executable, "-m", "uvicorn", "controlplane.asgi:application", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--no-access-log", "--lifespan", "on"]
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=process_env(**env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}

    def wait_ready(self, timeout: float = 30) -> bool:
        def up() -> bool:
            try:
                return self.request("GET", "/v2/health/live")[0] == 200
            except OSError:
                return False

        return wait_for(up, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


class GrpcProcess:
    """`manage.py serve_grpc`, the Open Inference Protocol's gRPC service, as the Procfile runs it."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        args = [sys.executable, "manage.py", "serve_grpc", "--bind", f"127.0.0.1:{self.port}", "--processes", "1"]
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=process_env(**env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> bool:
        return wait_for(lambda: "listening on" in self.log(), timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


class BeatProcess:
    """`celery -A controlplane beat`, as the Procfile runs it, with its schedule file in `log_path`'s folder."""

    def __init__(self, log_path: Path, **env: str) -> None:
        args = [sys.executable, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "INFO"]
        args += ["--schedule", str(log_path.with_suffix(".schedule"))]
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=process_env(**env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()
