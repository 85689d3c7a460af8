"""The CI recipe of docs/cli.md, run by the installed `turnout` command against a whole stack:
a uvicorn web process (management API and /v2), a Celery worker (validation and inference)
and Celery beat (the canary analysis, every second here through
TURNOUT_CANARY_ANALYSIS_TICK_SECONDS). Traffic goes to the web process's /v2 from a
thread, with a routing key per request so both arms get some.

upload -> wait -> canary -> watch: a sound candidate is promoted and `rollouts watch` exits
0; a candidate that cannot run a third of the inputs is rolled back by the error gate and
`rollouts watch` exits 5. Each ends with the database read back.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from accounts import services as key_services
from registry import services as registry_services
from registry.models import ModelVersion, RegisteredModel
from rollouts.models import Rollout, RolloutStatus
from tests.clients.conftest import Ran, cli_env, run_turnout
from tests.conftest import test_queue as run_queue
from tests.support.processes import BeatProcess, WebProcess, WorkerProcess, wait_for
from tests.support.rollout_models import body, champion_model, fails_on_large_first_feature

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

SERVED_PATTERN = "cli-*"


@dataclass
class Stack:
    web: WebProcess
    worker: WorkerProcess
    beat: BeatProcess

    def log(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-5000:]}" for p in (self.web, self.worker, self.beat))

    def stop(self) -> None:
        for process in (self.beat, self.web, self.worker):
            process.stop()


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("logs")
    env = {
        # Uploads' validations and beat's analyses go to a queue only this worker reads.
        "CELERY_TASK_DEFAULT_QUEUE": f"{run_queue()}-cli",
        "ARTIFACT_ROOT": str(artifact_dir),
        "TURNOUT_CANARY_ANALYSIS_TICK_SECONDS": "1",
    }
    worker = WorkerProcess("cli", logs / "worker.log", queues=env["CELERY_TASK_DEFAULT_QUEUE"],
                           TURNOUT_WORKER_MODELS=SERVED_PATTERN, **env)  # fmt: skip
    web = WebProcess(logs / "web.log", **env)
    beat = BeatProcess(logs / "beat.log", **env)
    stack = Stack(web, worker, beat)
    try:
        assert wait_for(lambda: " ready." in worker.log(), timeout=60), stack.log()
        assert web.wait_ready(), stack.log()
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


@dataclass
class Traffic:
    """Requests to /v2 from a thread, each with a new routing key, until stopped."""

    url: str
    key: str
    model: str
    bad_input: Callable[[int], bool] = lambda i: False
    statuses: Counter[tuple[str | None, int]] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a log record per request would drown a failure
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=15) as client:
            for i in itertools.count():
                if self._stop.is_set():
                    return
                payload = body(50.0 if self.bad_input(i) else 1.0)
                try:
                    answer = client.post(f"/v2/models/{self.model}/infer", json=payload,
                                         headers={"x-routing-key": f"client-{i}"})  # fmt: skip
                except httpx.HTTPError:
                    self.statuses[(None, -1)] += 1
                    continue
                self.statuses[(answer.headers.get("x-turnout-arm"), answer.status_code)] += 1
                self._stop.wait(0.02)  # about 50 requests a second: well inside the key's rate limit


@pytest.fixture
def ci(stack: Stack, owner: Any, tmp_path: Path) -> Callable[..., Ran]:
    """`turnout` as a CI job runs it: the owner's key with the manage action in TURNOUT_API_KEY."""
    _, secret = key_services.create_key(owner, name="ci", model_patterns=["cli-*"], actions=["manage", "read", "infer"])
    env = cli_env(tmp_path, TURNOUT_URL=stack.web.url, TURNOUT_API_KEY=secret)
    return lambda *args, timeout=120: run_turnout(list(args), env, timeout=timeout)


@pytest.fixture
def traffic_key(owner: Any) -> str:
    # Its own key: the traffic spends its own rate limit, not the CI job's.
    # The models are created by the test, after the key: a key meant for models to come.
    _, secret = key_services.create_key(
        owner, name="app", model_patterns=["cli-*"], actions=["infer"], future_models=True
    )
    return secret


def publish(ci: Callable[..., Ran], stack: Stack, model: str, onnx: Path) -> int:
    """The recipe's first half: upload, wait until validated; returns the version number."""
    uploaded = ci("--json", "versions", "upload", model, str(onnx), "--wait", "--wait-timeout", "90", timeout=150)
    assert uploaded.code == 0, f"{uploaded.err}\n{stack.log()}"
    version = uploaded.json()
    assert version["status"] == "ready"
    return int(version["number"])


def start_canary(ci: Callable[..., Ran], model: str, number: int, *gates: str) -> int:
    started = ci(
        "--json", "rollouts", "start", "canary", model, str(number), "--steps", "50,100", "--step-seconds", "1",
        "--analysis-interval", "1", "--gate", "min_requests=20", *(arg for g in gates for arg in ("--gate", g)),
    )  # fmt: skip
    assert started.code == 0, started.err
    return int(started.json()["id"])


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_ci_recipe_promotes_a_sound_candidate_and_watch_exits_0(
    stack: Stack, ci: Callable[..., Ran], traffic_key: str, tmp_path: Path
) -> None:
    # Given a model in production, published with the command
    assert ci("models", "create", "cli-ok").code == 0
    champion = publish(ci, stack, "cli-ok", write(tmp_path, "v1.onnx", champion_model()))
    assert ci("aliases", "set", "cli-ok", "production", str(champion)).code == 0

    # When CI uploads a candidate, waits for it, starts a canary and watches it under traffic
    candidate = publish(ci, stack, "cli-ok", write(tmp_path, "v2.onnx", champion_model(seed=1)))
    # The latency gate stays on, loose enough for ~20 requests of ~1 ms each on a shared machine,
    # where one slow request moves a p95 threefold (seen in CI: canary p95 4.5 ms against 1.4 ms).
    rollout_id = start_canary(ci, "cli-ok", candidate, "max_p95_ratio=10.0")
    with Traffic(stack.web.url, traffic_key, "cli-ok") as traffic:
        watched = ci("rollouts", "watch", str(rollout_id), "--interval", "1", "--timeout", "150", timeout=180)

    # Then the watch exits 0 once the analysis has promoted it through both steps
    assert watched.code == 0, f"{watched.out}\n{watched.err}\n{stack.log()}"
    assert f"rollout {rollout_id} promoted: cli-ok production is v{candidate}" in watched.out
    rollout = Rollout.objects.get(pk=rollout_id)
    assert (rollout.status, rollout.step, rollout.outcome["winner"]) == (RolloutStatus.PROMOTED, 1, "canary")
    model = RegisteredModel.objects.get(name="cli-ok")
    assert registry_services.serving_version(model) == ModelVersion.objects.get(model=model, number=candidate)
    assert {arm for arm, _ in traffic.statuses} >= {"champion", "canary"}
    assert all(status == 200 for (_, status) in traffic.statuses), traffic.statuses


def test_a_candidate_that_fails_is_rolled_back_and_watch_exits_5(
    stack: Stack, ci: Callable[..., Ran], traffic_key: str, tmp_path: Path
) -> None:
    # Given a model in production and a candidate that cannot run inputs whose first value is large
    assert ci("models", "create", "cli-bad").code == 0
    champion = publish(ci, stack, "cli-bad", write(tmp_path, "v1.onnx", champion_model()))
    assert ci("aliases", "set", "cli-bad", "production", str(champion)).code == 0
    candidate = publish(ci, stack, "cli-bad", write(tmp_path, "v2.onnx", fails_on_large_first_feature()))

    # When its canary gets traffic of which a third are such inputs
    rollout_id = start_canary(ci, "cli-bad", candidate, "max_p95_ratio=null")
    with Traffic(stack.web.url, traffic_key, "cli-bad", bad_input=lambda i: i % 3 == 0) as traffic:
        watched = ci("--json", "rollouts", "watch", str(rollout_id), "--interval", "1", "--timeout", "150", timeout=180)

    # Then the error gate rolls it back and the watch exits 5, its last line the final state
    assert watched.code == 5, f"{watched.out}\n{watched.err}\n{stack.log()}"
    error = json.loads(watched.err)
    assert error["exit_code"] == 5
    assert "was rolled_back" in error["error"]
    final = json.loads(watched.out.strip().splitlines()[-1])
    assert (final["status"], final["outcome"]["gate"]) == ("rolled_back", "error_rate_increase")
    rollout = Rollout.objects.get(pk=rollout_id)
    assert rollout.status == RolloutStatus.ROLLED_BACK
    model = RegisteredModel.objects.get(name="cli-bad")
    assert registry_services.serving_version(model) == ModelVersion.objects.get(model=model, number=champion)
    # only the canary refused inputs (the champion answers every input), and nothing else failed
    refused_by = {arm for (arm, status) in traffic.statuses if status != 200}
    assert refused_by == {"canary"}, traffic.statuses
    assert {status for (_, status) in traffic.statuses} == {200, 400}


def test_infer_sends_a_json_file_and_npy_arrays_as_binary_and_exits_3_on_a_bad_tensor(
    stack: Stack, ci: Callable[..., Ran], tmp_path: Path
) -> None:
    onnx = champion_model(seed=2)
    assert ci("models", "create", "cli-infer").code == 0
    number = publish(ci, stack, "cli-infer", write(tmp_path, "v1.onnx", onnx))
    assert ci("aliases", "set", "cli-infer", "production", str(number)).code == 0
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    [output] = session.get_outputs()
    rows = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, 0.5, 0.25, 0.0]], dtype=np.float32)
    expected = session.run(None, {"input": rows})[0]
    request = {
        "id": "req-1",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": rows[0].tolist()}],
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    np.save(tmp_path / "rows.npy", rows)

    from_json = ci("--json", "infer", "cli-infer", "--input-file", str(tmp_path / "request.json"))
    from_npy = ci("--json", "infer", "cli-infer", "--npy", f"input={tmp_path / 'rows.npy'}", "--binary")
    human = ci("infer", "cli-infer", "--version", str(number), "--npy", f"input={tmp_path / 'rows.npy'}")

    assert (from_json.code, from_npy.code, human.code) == (0, 0, 0), f"{from_json.err}{from_npy.err}{stack.log()}"
    answer = from_json.json()
    assert (answer["model_version"], answer["id"]) == (str(number), "req-1")
    [out] = answer["outputs"]
    assert (out["name"], out["shape"]) == (output.name, [1, 3])
    assert np.allclose(out["data"], expected[0].ravel(), atol=1e-5)
    [binary] = from_npy.json()["outputs"]
    assert binary["parameters"]["binary_data_size"] == expected.nbytes  # it came back as raw bytes
    assert np.allclose(binary["data"], expected, atol=1e-5)
    assert f"cli-infer v{number} arm=pinned" in human.out

    (tmp_path / "bad.json").write_text(json.dumps({"inputs": [{**request["inputs"][0], "shape": [1, 5]}]}))
    bad = ci("infer", "cli-infer", "--input-file", str(tmp_path / "bad.json"))

    assert bad.code == 3
    assert "HTTP 400 from POST /v2/models/cli-infer/infer" in bad.err
