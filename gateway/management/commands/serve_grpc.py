"""`manage.py serve_grpc`: the Open Inference Protocol's gRPC service (gateway/grpc_server.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import uvloop
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from gateway.grpc_server import serve


class Command(BaseCommand):
    help = "Serve the Open Inference Protocol over gRPC (inference.GRPCInferenceService)."

    def add_arguments(self, parser: CommandParser) -> None:
        conf = settings.TURNOUT
        parser.add_argument("--bind", default=conf["GRPC_BIND"], help="host:port (TURNOUT_GRPC_BIND)")
        parser.add_argument(
            "--processes",
            type=int,
            default=conf["GRPC_PROCESSES"],
            help="server processes sharing the port (TURNOUT_GRPC_PROCESSES)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.TURNOUT["GRPC_ENABLED"]:
            # Idle rather than exit: under honcho (`make run`) one process ending stops them all.
            self.stderr.write("gRPC is turned off (TURNOUT_GRPC_ENABLED=false); idle until stopped")
            signal.sigwait({signal.SIGTERM, signal.SIGINT})
            return
        processes = max(1, int(options["processes"]))
        # Separate processes started afresh, never forked: grpc's core must not be forked once started.
        # SO_REUSEPORT (grpc_server.server_options) lets them all bind the same port.
        command = [sys.executable, sys.argv[0], "serve_grpc", "--bind", options["bind"], "--processes", "1"]
        children = [subprocess.Popen(command) for _ in range(processes - 1)]  # noqa: S603 (our own command)
        try:
            # uvloop, as the web processes run: grpc.aio works on it, and its loop costs less per call.
            uvloop.run(serve(options["bind"]))
        finally:
            for child in children:
                child.terminate()
            for child in children:
                child.wait(15)
