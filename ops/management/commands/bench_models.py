"""`manage.py bench_models`: register the benchmark models (ops/benchmark.py) and their API key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlplane.celery import app
from ops.benchmark import (
    BATCHING_OFF,
    BATCHING_ON,
    BENCH_MODELS,
    KEY_FILE,
    BenchSetupError,
    bench_key,
    register,
    register_pipeline,
)
from ops.demo_pipeline import DemoFailed


class Command(BaseCommand):
    help = (
        "Register the benchmark models (bench-mlp-small, bench-mlp-large, the bench-sentiment pipeline "
        "and their -nobatch twins)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--models", default=",".join(BENCH_MODELS), help=f"comma-separated subset of {', '.join(BENCH_MODELS)}"
        )
        parser.add_argument(
            "--queue",
            default="",
            help="Celery queue for the validation message an upload sends (default: the default queue). "
            "Validation runs inline here anyway; bench/run.py points this at its private worker's queue "
            "so that no other worker picks the message up.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        keys = [k.strip() for k in options["models"].split(",") if k.strip()]
        unknown = [k for k in keys if k not in BENCH_MODELS]
        if unknown:
            raise CommandError(f"unknown benchmark model(s) {unknown}; choose from {sorted(BENCH_MODELS)}")
        if options["queue"]:
            app.conf.task_default_queue = options["queue"]
        for key in keys:
            spec = BENCH_MODELS[key]
            try:
                if spec.build is None:
                    self.stdout.write(register_pipeline(spec.name, BATCHING_ON))
                    self.stdout.write(register_pipeline(spec.nobatch_name, BATCHING_OFF))
                    continue
                artifact = spec.build()
                self.stdout.write(register(spec.name, spec.description, artifact, BATCHING_ON))
                self.stdout.write(
                    register(spec.nobatch_name, spec.description + " Batching off.", artifact, BATCHING_OFF)
                )
            except (BenchSetupError, DemoFailed) as exc:
                raise CommandError(str(exc)) from exc
        bench_key()
        self.stdout.write(f"API key for bench-* in {KEY_FILE}")
