"""Uploading, waiting for, configuring and aliasing versions, and starting, steering and
watching rollouts with the `turnout` command against a live server's management API.

No worker runs here: an uploaded version stays pending until the test runs its validation
in-process (as the worker would), which lets `versions wait` time out first. No beat runs
either: rollouts end by the commands; tests/integration/test_cli_ci_recipe.py lets the
canary analysis end them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry import services as registry_services
from registry.demo_models import build_mlp
from registry.models import Alias, ModelVersion, RegisteredModel, VersionStatus
from rollouts import services as rollouts_services
from rollouts.models import Rollout, RolloutStatus
from tests.clients.conftest import TURNOUT, Ran, cli_env
from tests.factories import ModelVersionFactory, RegisteredModelFactory
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

Turnout = Callable[..., Ran]


def _validate(model: str, number: int) -> ModelVersion:
    version = ModelVersion.objects.get(model__name=model, number=number)
    registry_services.run_validation(version.validation_jobs.get().pk)
    version.refresh_from_db()
    return version


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(build_mlp(4, [8], 3, seed=7))
    return path


@pytest.fixture
def two_versions(owner: Any, artifact_root: Path) -> RegisteredModel:
    """`fraud` with v1 in production and a ready v2."""
    model = RegisteredModelFactory(name="fraud", actor=owner)
    ModelVersionFactory(model=model, actor=owner, onnx_bytes=build_mlp(4, [8], 3), validate=True, production=True)
    ModelVersionFactory(model=model, actor=owner, onnx_bytes=build_mlp(4, [8], 3, seed=1), validate=True)
    return model


def test_an_upload_is_waited_for_configured_and_aliased(
    turnout: Turnout, owner: Any, artifact_root: Path, onnx_file: Path
) -> None:
    assert turnout("models", "create", "fraud").code == 0

    uploaded = turnout(
        "--json", "versions", "upload", "fraud", str(onnx_file), "--description", "seed 7", "--tag", "nightly",
        "--metadata", '{"git_sha": "abc123"}', "--set", "max_batch_size=16",
    )  # fmt: skip

    assert uploaded.code == 0, uploaded.err
    body = uploaded.json()
    assert (body["number"], body["status"]) == (1, "pending")
    version = ModelVersion.objects.get(model__name="fraud", number=1)
    assert (version.description, version.tags, version.metadata) == ("seed 7", ["nightly"], {"git_sha": "abc123"})
    assert version.max_batch_size == 16
    assert version.size_bytes == onnx_file.stat().st_size

    # no worker has validated it yet: waiting runs out of time
    timed_out = turnout("versions", "wait", "fraud", "1", "--timeout", "1")
    assert timed_out.code == 6
    assert "still pending after 1 s" in timed_out.err

    assert _validate("fraud", 1).status == VersionStatus.READY
    ready = turnout("versions", "wait", "fraud", "1")
    assert ready.code == 0, ready.err
    assert "fraud v1 ready" in ready.out

    duplicate = turnout("--json", "versions", "upload", "fraud", str(onnx_file))
    assert duplicate.code == 0
    assert duplicate.json()["duplicate"] is True
    assert ModelVersion.objects.filter(model__name="fraud").count() == 1

    changed = turnout(
        "versions", "set", "fraud", "1", "max_batch_size=8", "preferred_batch_sizes=[4,8]", "warmup=false"
    )
    cached = turnout("versions", "cache-ttl", "fraud", "1", "60")
    unknown = turnout("versions", "set", "fraud", "1", "max_batch=8")
    aliased = turnout("aliases", "set", "fraud", "production", "1")

    assert (changed.code, cached.code, aliased.code) == (0, 0, 0), (changed.err, cached.err, aliased.err)
    assert unknown.code == 3
    assert "Unknown field" in unknown.err
    version.refresh_from_db()
    assert (version.max_batch_size, version.preferred_batch_sizes, version.warmup) == (8, [4, 8], False)
    assert version.cache_ttl_seconds == 60
    assert Alias.objects.get(model__name="fraud", name="production").version == version
    listed = turnout("--json", "aliases", "list", "fraud")
    assert [(a["name"], a["version"]) for a in listed.json()] == [("production", 1)]

    archived = turnout("versions", "archive", "fraud", "1")
    assert archived.code == 3  # production points at it
    assert "alias" in archived.err
    version.refresh_from_db()
    assert version.status == VersionStatus.READY


def test_a_version_that_fails_validation_exits_8_and_says_why(
    turnout: Turnout, owner: Any, artifact_root: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "broken.onnx"
    garbage.write_bytes(b"this is not an onnx model")
    assert turnout("models", "create", "fraud").code == 0
    assert turnout("versions", "upload", "fraud", str(garbage)).code == 0

    assert _validate("fraud", 1).status == VersionStatus.FAILED
    ran = turnout("versions", "wait", "fraud", "1")

    assert ran.code == 8
    assert "fraud v1 is failed: the file is not a valid ONNX model" in ran.err
    shown = turnout("versions", "show", "fraud", "1")
    assert shown.code == 0
    assert "validation log (last lines):" in shown.out


def test_a_canary_is_started_paused_resumed_and_aborted_and_watch_exits_5(
    turnout: Turnout, two_versions: RegisteredModel
) -> None:
    started = turnout(
        "--json", "rollouts", "start", "canary", "fraud", "2", "--steps", "50,100", "--step-seconds", "30",
        "--gate", "min_requests=10", "--gate", "max_p95_ratio=null",
    )  # fmt: skip

    assert started.code == 0, started.err
    rollout = Rollout.objects.get(pk=started.json()["id"])
    assert (rollout.kind, rollout.status, rollout.config["steps"]) == ("canary", "running", [50.0, 100.0])
    assert rollout.config["gates"]["min_requests"] == 10
    assert rollout.config["gates"]["max_p95_ratio"] is None

    again = turnout("rollouts", "start", "canary", "fraud", "2")
    assert again.code == 3
    assert "already has an active rollout" in again.err

    assert turnout("rollouts", "pause", str(rollout.pk)).code == 0
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    assert turnout("rollouts", "resume", str(rollout.pk)).code == 0
    shown = turnout("rollouts", "show", str(rollout.pk))
    assert shown.code == 0
    assert "canary:v2@50%" in shown.out
    assert "min_requests" in shown.out

    assert turnout("rollouts", "abort", str(rollout.pk), "--reason", "bad dashboards").code == 0
    watched = turnout("rollouts", "watch", str(rollout.pk), "--interval", "0.2")

    assert watched.code == 5
    assert "was aborted: bad dashboards" in watched.err
    rollout.refresh_from_db()
    assert (rollout.status, rollout.outcome["reason"]) == (RolloutStatus.ABORTED, "bad dashboards")
    assert registry_services.serving_version(two_versions).number == 1


def test_a_promoted_canary_watch_exits_0(turnout: Turnout, two_versions: RegisteredModel) -> None:
    started = turnout("--json", "rollouts", "start", "canary", "fraud", "2")
    rollout_id = str(started.json()["id"])

    promoted = turnout("rollouts", "promote", rollout_id)
    watched = turnout("--json", "rollouts", "watch", rollout_id, "--interval", "0.2")

    assert (promoted.code, watched.code) == (0, 0), (promoted.err, watched.err)
    assert watched.out.strip().splitlines()[-1].startswith("{")  # JSON lines, one per read
    assert Rollout.objects.get(pk=rollout_id).status == RolloutStatus.PROMOTED
    assert registry_services.serving_version(two_versions).number == 2


def test_a_watch_that_runs_out_of_time_exits_6(turnout: Turnout, two_versions: RegisteredModel) -> None:
    started = turnout("--json", "rollouts", "start", "shadow", "fraud", "2", "--fraction", "0.5")
    rollout_id = str(started.json()["id"])

    watched = turnout("rollouts", "watch", rollout_id, "--interval", "0.2", "--timeout", "1")

    assert watched.code == 6
    assert "shadow of fraud" in watched.out
    assert Rollout.objects.get(pk=rollout_id).status == RolloutStatus.RUNNING
    stopped = turnout("rollouts", "stop", rollout_id)
    assert stopped.code == 0
    assert Rollout.objects.get(pk=rollout_id).status == RolloutStatus.STOPPED


def test_quantize_compare_and_capacity_are_requested_and_listed(
    turnout: Turnout, two_versions: RegisteredModel
) -> None:
    quantized = turnout("--json", "versions", "quantize", "fraud", "1", "--method", "fp16")
    compared = turnout("--json", "versions", "compare", "fraud", "2", "--baseline", "1", "--rows", "64")
    measured = turnout("--json", "versions", "capacity", "fraud", "1", "--p99-target-ms", "50")
    unknown_method = turnout("versions", "quantize", "fraud", "1", "--method", "int4")
    apply_without_wait = turnout("versions", "capacity", "fraud", "1", "--p99-target-ms", "50", "--apply")

    assert (quantized.code, compared.code, measured.code) == (0, 0, 0), (quantized.err, compared.err, measured.err)
    assert (unknown_method.code, apply_without_wait.code) == (2, 2)
    v1 = ModelVersion.objects.get(model=two_versions, number=1)
    v2 = ModelVersion.objects.get(model=two_versions, number=2)
    [job] = v1.quantization_jobs.all()
    assert (job.pk, job.method, job.status) == (quantized.json()["id"], "fp16", "queued")
    [comparison] = v2.comparisons.all()
    assert (comparison.baseline, comparison.rows) == (v1, 64)
    [report] = v1.capacity_reports.all()
    assert report.p99_target_ms == 50

    listed = turnout("--json", "versions", "jobs", "fraud", "1", "quantizations")
    assert listed.code == 0
    assert [j["id"] for j in listed.json()] == [job.pk]
    again = turnout("versions", "quantize", "fraud", "1", "--method", "fp16")
    assert again.code == 3
    assert v1.quantization_jobs.count() == 1


def test_a_watch_outlives_the_server_going_away_for_a_while(
    live_server: Any, owner_key: str, owner: Any, two_versions: RegisteredModel, tmp_path: Path
) -> None:
    # Given a running canary, watched through a proxy in front of the server
    candidate = ModelVersion.objects.get(model=two_versions, number=2)
    rollout = rollouts_services.start_canary(two_versions, candidate, actor=owner)
    host, port = live_server.url.removeprefix("http://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    env = cli_env(tmp_path, TURNOUT_URL=f"http://127.0.0.1:{proxy.port}", TURNOUT_API_KEY=owner_key)
    watch = subprocess.Popen(
        [str(TURNOUT), "rollouts", "watch", str(rollout.pk), "--interval", "0.3", "--timeout", "60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watch.stdout is not None
        assert f"rollout {rollout.pk}" in watch.stdout.readline()  # it has read the rollout once

        # When the server cannot be reached for a second and a half, and the canary is promoted meanwhile
        proxy.stop()
        time.sleep(1.5)
        rollouts_services.promote(rollout, actor=owner)
        proxy.start()

        # Then the watch carried on and exits 0 with the promotion
        out, err = watch.communicate(timeout=60)
    finally:
        watch.kill()
        proxy.stop()
    assert watch.returncode == 0, err
    assert f"rollout {rollout.pk} promoted: fraud production is v2" in out
