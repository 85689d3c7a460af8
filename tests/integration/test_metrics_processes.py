"""Prometheus figures from real processes: two web processes and two workers
write to one multiprocess directory, and `/metrics` (read through either web
process) shows the counters moving by exactly the requests sent. Each
inference also writes one JSON access-log line with its request id."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from registry.demo_models import build_mlp
from tests.conftest import test_queue as run_queue
from tests.integration.conftest import AccessLog, as_json_line
from tests.support.asgi import AsgiClient
from tests.support.processes import WebProcess, WorkerProcess, wait_for
from tests.support.prometheus import families, parse, value
from tests.support.serving import Registry
from tests.support.v2 import NOT_LOADED

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

MLP = build_mlp(4, [8], 2, seed=5)
JSON = {"content-type": "application/json"}

# The processes are started once for the module (each costs seconds) and serve only
# models whose name starts with `met-`.
SERVED_PATTERN = "met-*"
METRICS_TOKEN = "metrics-test-token-0123456789"


@dataclass
class Stack:
    """Two web processes and two workers writing to one multiprocess directory."""

    multiproc_dir: Path
    webs: list[WebProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def log(self) -> str:
        processes: list[Any] = [*self.webs, *self.workers]
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-6000:]}" for p in processes)

    def scrape(self, web: WebProcess) -> str:
        status, body, headers = web.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200, body
        assert headers["content-type"].startswith("text/plain"), headers
        return body.decode()

    def wait_loaded(self, model: str, version: int, timeout: float = 60) -> None:
        """Until every web process answers ready and both workers have loaded the version."""
        path = f"/v2/models/{model}/versions/{version}/ready"

        def loaded(web: WebProcess) -> bool:
            status, body, _ = web.request("GET", path)
            if status != 200:
                return False
            providers = json.loads(body)["execution_providers"]
            return len(providers) == len(self.workers) and NOT_LOADED not in providers.values()

        for web in self.webs:
            assert wait_for(functools.partial(loaded, web), timeout), f"{model} v{version} not loaded\n{self.log()}"

    def stop(self) -> None:
        for web in self.webs:
            web.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("logs")
    stack = Stack(tmp_path_factory.mktemp("prometheus-multiproc"))
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(stack.multiproc_dir),
        "TURNOUT_REQUIRE_API_KEY": "false",
        "TURNOUT_METRICS_TOKEN": METRICS_TOKEN,
        "TURNOUT_METRICS_ENABLED": "true",
        "TURNOUT_ACCESS_LOG": "true",
        "ARTIFACT_ROOT": str(artifact_dir),
    }
    try:
        for index in range(2):
            stack.workers.append(
                WorkerProcess(
                    f"met{index}",
                    logs / f"worker{index}.log",
                    # Not the run's test queue: the validation messages that uploads
                    # enqueue stay unconsumed; the test validates in-process.
                    queues=f"{run_queue()}-metrics",
                    TURNOUT_WORKER_MODELS=SERVED_PATTERN,
                    **env,
                )
            )
        stack.webs = [WebProcess(logs / f"web{index}.log", **env) for index in range(2)]
        started = wait_for(lambda: all(" ready." in w.log() for w in stack.workers), timeout=60)
        assert started, f"the workers did not start\n{stack.log()}"
        for web in stack.webs:
            assert web.wait_ready(), f"a web process did not start\n{stack.log()}"
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


# Not the conftest's `serve` (one worker, the in-process gateway): here every process must have loaded it.
@pytest.fixture
def serve(registry: Registry, stack: Stack) -> Callable[..., Any]:
    """Register a model as ready in production and wait until both workers have loaded it."""

    def add(name: str, onnx_bytes: bytes, **fields: Any) -> Any:
        version = registry.add(name, onnx_bytes, **fields)
        stack.wait_loaded(name, version.number)
        return version

    return add


def infer_body(rows: np.ndarray, request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}]
    }
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body)


def test_metrics_without_credentials_or_with_a_wrong_token_are_401_on_a_real_web_process(stack: Stack) -> None:
    web = stack.webs[0]

    assert web.request("GET", "/metrics")[0] == 401
    assert web.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}-"})[0] == 401
    assert web.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})[0] == 200


def test_counters_move_by_exactly_the_requests_sent_across_two_web_processes_and_two_workers(
    serve: Callable[..., Any], stack: Stack
) -> None:
    version = serve("met-counting", MLP, max_queue_delay_ms=5)
    model, number = "met-counting", str(version.number)
    sent = 60
    rng = np.random.default_rng(7)
    bodies = [infer_body(rng.standard_normal((1, 4)).astype(np.float32)) for _ in range(sent)]
    before = [parse(stack.scrape(web)) for web in stack.webs]
    assert before[0] == before[1], "both web processes aggregate the same directory"

    def send(index: int) -> int:
        web = stack.webs[index % 2]
        path = f"/v2/models/{model}/infer"
        return web.request("POST", path, bodies[index], JSON)[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(send, range(sent)))
    assert statuses == [200] * sent, stack.log()

    old = before[0]
    counted = {"model": model, "version": number, "code": "200"}
    # The gateway adds its counts to the metrics once a second: wait for the flush.
    after_text: list[str] = []
    after: list[Any] = []

    def flushed() -> bool:
        after_text[:] = [stack.scrape(web) for web in stack.webs]
        after[:] = [parse(text) for text in after_text]
        return (
            value(after[0], "turnout_inference_requests_total", **counted)
            - value(old, "turnout_inference_requests_total", **counted)
            == sent
            and after[0] == after[1]
        )

    assert wait_for(flushed, timeout=10, interval=0.25)
    assert after[0] == after[1], "both web processes aggregate the same directory"
    new = after[0]

    def moved(name: str, **labels: str) -> float:
        return value(new, name, **labels) - value(old, name, **labels)

    series = {"model": model, "version": number}
    # Gateway side: one count per answered request, whichever web process answered it.
    assert moved("turnout_inference_requests_total", **series, code="200") == sent
    assert moved("turnout_inference_requests_total", **series) == sent
    for stage in ("validation", "queue", "compute", "total"):
        assert moved("turnout_inference_stage_seconds_count", **series, stage=stage) == sent, stage
    assert moved("turnout_inference_stage_seconds_bucket", **series, stage="total", le="+Inf") == sent
    assert moved("turnout_inference_stage_seconds_sum", **series, stage="total") > 0
    assert moved("turnout_inference_batch_size_count", **series) == sent
    # Worker side: one observation per onnxruntime run, of the rows it ran.
    batches = moved("turnout_worker_batch_size_count", **series)
    assert 1 <= batches <= sent
    assert moved("turnout_worker_batch_size_sum", **series) == sent
    assert moved("turnout_worker_batch_size_bucket", **series, le="+Inf") == batches
    # Each request rode in a batch of at least its own row, at most all of them.
    assert sent <= moved("turnout_inference_batch_size_sum", **series) <= sent * sent

    # Read at scrape time: nothing left waiting, both workers alive and holding the model.
    assert value(new, "turnout_queue_depth", **series) == 0
    assert ("turnout_queue_depth", frozenset(series.items())) in new
    assert value(new, "turnout_workers_alive") >= 2
    assert value(new, "turnout_model_loaded", **series) == 2
    assert {"turnout_queue_depth", "turnout_workers_alive", "turnout_model_load_seconds"} <= families(after_text[0])


def test_refused_requests_count_under_their_status_code(serve: Callable[..., Any], stack: Stack) -> None:
    serve("met-refused", MLP)
    before = parse(stack.scrape(stack.webs[0]))
    wrong_shape = infer_body(np.zeros((1, 3), dtype=np.float32))

    for web in stack.webs:
        status, _, _ = web.request("POST", "/v2/models/met-refused/infer", wrong_shape, JSON)
        assert status == 400

    labels = {"model": "met-refused", "code": "400"}
    latest: list[Any] = []

    def counted() -> bool:  # the gateway adds its counts to the metrics once a second
        latest[:] = [parse(stack.scrape(stack.webs[1]))]
        return (
            value(latest[0], "turnout_inference_requests_total", **labels)
            - value(before, "turnout_inference_requests_total", **labels)
            == 2
        )

    assert wait_for(counted, timeout=10, interval=0.25)
    after = latest[0]
    # A refused request ran in no batch.
    assert value(after, "turnout_worker_batch_size_count", model="met-refused") == 0


ACCESS_FIELDS = {
    "request_id", "client", "model", "version", "arm", "status", "batch_size",
    "validation_ms", "queue_ms", "compute_ms", "total_ms",
}  # fmt: skip


def test_an_inference_writes_one_json_access_line_with_the_echoed_request_id(
    serve: Callable[..., Any], stack: Stack, gateway_client: AsgiClient, access_log: AccessLog
) -> None:
    version = serve("met-logged", MLP)
    # Distinctive values, to show no tensor data reaches the log.
    rows = np.array([[1234.5678, -8765.4321, 0.0, 42.4242]], dtype=np.float32)
    headers = {"content-type": "application/json", "x-request-id": "req-metrics-0001"}

    response = gateway_client.post("/v2/models/met-logged/infer", infer_body(rows, "client-id-7"), headers=headers)

    assert response.status == 200, response.body
    assert response.headers["x-request-id"] == "req-metrics-0001"
    records = access_log()
    assert len(records) == 1
    line = as_json_line(records[0])
    assert line["request_id"] == "req-metrics-0001"
    assert line["model"] == "met-logged"
    assert line["version"] == str(version.number)
    assert line["arm"] == "champion"
    assert line["status"] == 200
    assert line["batch_size"] == 1
    assert line["logger"] == "turnout.access"
    assert line["message"] == "POST /v2/models/met-logged/infer 200"
    for stage in ("validation_ms", "queue_ms", "compute_ms", "total_ms"):
        assert isinstance(line[stage], int | float), stage
        assert line[stage] >= 0, stage
    assert line["total_ms"] >= line["compute_ms"]
    assert set(line) <= ACCESS_FIELDS | {"time", "level", "logger", "message"}
    text = json.dumps(line)
    for leaked in ("1234.5", "8765.4", "42.42", "inputs", "client-id-7"):
        assert leaked not in text


def test_a_refused_inference_is_logged_too_under_a_generated_request_id(
    serve: Callable[..., Any], stack: Stack, gateway_client: AsgiClient, access_log: AccessLog
) -> None:
    serve("met-logged-bad", MLP)

    response = gateway_client.post(
        "/v2/models/met-logged-bad/infer",
        infer_body(np.zeros((1, 3), dtype=np.float32)),
        headers={"content-type": "application/json", "x-request-id": "not valid!"},
    )

    assert response.status == 400
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), "an unusable client id is replaced by a fresh one"
    [record] = access_log()
    line = as_json_line(record)
    assert line["request_id"] == request_id
    assert line["status"] == 400
    assert line["batch_size"] == 0
    assert line["model"] == "met-logged-bad"
