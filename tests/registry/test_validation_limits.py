"""Validation is sized from the host: each child's memory limit comes from the host's
memory and the number of children a worker runs at once, and a worker never runs more
children than that, however many uploads arrive together."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from controlplane.settings import host_memory_bytes, validation_memory_bytes
from registry import services
from registry.demo_models import build_mlp
from registry.models import ValidationJob, VersionStatus

GIB = 1024**3
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("host", "concurrency", "each"),
    [
        (24 * GIB, 1, 6 * GIB),  # this machine: a quarter of 24 GiB, not 8 GiB
        (24 * GIB, 4, GIB + GIB // 2),  # four at once share that quarter
        (128 * GIB, 1, 8 * GIB),  # never more than 8 GiB each
        (1 * GIB, 2, 512 * 1024**2),  # never less than 512 MiB each
    ],
)
def test_each_childs_memory_limit_is_a_share_of_a_quarter_of_the_host(host: int, concurrency: int, each: int) -> None:
    assert validation_memory_bytes(host, concurrency) == each


def defaults(**env: str) -> tuple[int, int]:
    """(memory per child, children at once) as a process started with this environment and
    no .env file sees them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_VALIDATION_")}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'controlplane.settings'); "
            "from django.conf import settings as s; t = s.TURNOUT; "
            "print(t['VALIDATION_MEMORY_BYTES'], t['VALIDATION_CONCURRENCY'])",
        ],
        cwd=ROOT,
        env={**clean, **env, "TURNOUT_SKIP_DOTENV": "1", "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    memory, concurrency = probe.stdout.split()
    return int(memory), int(concurrency)


def test_by_default_the_children_together_fit_in_a_quarter_of_this_host() -> None:
    quarter = host_memory_bytes() // 4

    one = defaults()
    four = defaults(TURNOUT_VALIDATION_CONCURRENCY="4")

    assert one == (min(8 * GIB, quarter), 1)
    assert four[1] == 4
    assert four[0] * 4 <= quarter


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_one_validation_child_at_a_time_by_default(
    owner: Any, artifact_root: Path, settings: Any
) -> None:
    assert settings.TURNOUT["VALIDATION_CONCURRENCY"] == 1
    model = services.create_model(name="burst", actor=owner)
    jobs = [
        services.upload_version(model, io.BytesIO(build_mlp(8, [16], 2, seed=seed)), actor=owner)
        .version.validation_jobs.get()
        .pk
        for seed in range(3)
    ]
    barrier = threading.Barrier(len(jobs))

    def validate(job_id: int) -> None:
        try:
            barrier.wait()
            services.run_validation(job_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=validate, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    runs = sorted(ValidationJob.objects.filter(pk__in=jobs).values_list("started_at", "finished_at"))
    assert all(job.version.status == VersionStatus.READY for job in ValidationJob.objects.filter(pk__in=jobs))
    for (_, finished), (started, _) in itertools.pairwise(runs):
        assert finished <= started  # no two children at once
