"""A request whose values make the model allocate without bound gets a clear answer,
and the worker's memory comes back.

The model's output size is an input value (ConstantOfShape): `n` floats, plus
`x`, and their sum. A real worker runs it with a 256 MiB limit for inference
(TURNOUT_WORKER_RUN_MEMORY_BYTES). Its resident memory is read from
/proc/<pid>/status before and after.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto, helper

from tests.support.asgi import AsgiClient
from tests.support.serving import Registry, Workers, start_workers
from tests.support.v2 import Gateway

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LIMIT = 256 * 1024**2
# What a worker's RSS may stay above its baseline after a big request: the arena's
# first region (32 MiB, kept) and allocator slack.
SLACK = 64 * 1024**2


def sized_by_input() -> bytes:
    """n INT64[1], x FP32[1] -> y = ones(n) + x (FP32[n]) and s = sum(y) (FP32[1])."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("ConstantOfShape", ["n"], ["ones"], value=one),
            helper.make_node("Add", ["ones", "x"], ["y"]),
            helper.make_node("ReduceSum", ["y"], ["s"], keepdims=1),
        ],
        "sized-by-input",
        [
            helper.make_tensor_value_info("n", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def worker(django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    started = start_workers(
        ["mem"], tmp_path_factory.mktemp("logs"), artifact_dir, TURNOUT_WORKER_RUN_MEMORY_BYTES=str(LIMIT)
    )
    yield started
    started.stop()


def rss(worker: Workers) -> int:
    pid = worker.processes[0].process.pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ask(gateway: Gateway, n: int) -> Any:
    body = {
        "inputs": [
            {"name": "n", "datatype": "INT64", "shape": [1], "data": [n]},
            {"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]},
        ],
        "outputs": [{"name": "s"}],
    }
    return gateway.infer("inf-memory", body)


def settled_rss(worker: Workers, ceiling: int) -> int:
    """The worker's RSS once it is under `ceiling`, or after 5 s."""
    deadline = time.monotonic() + 5
    while rss(worker) > ceiling and time.monotonic() < deadline:
        time.sleep(0.1)
    return rss(worker)


def test_a_request_that_would_allocate_gigabytes_is_refused_and_memory_comes_back(
    worker: Workers, registry: Registry, gateway_client: AsgiClient
) -> None:
    gateway = Gateway(gateway_client, gateway_client.gateway)  # type: ignore[attr-defined]
    version = registry.add("inf-memory", sized_by_input())
    gateway.wait_loaded("inf-memory", version.number, worker)
    normal = ask(gateway, 10)
    assert normal.status == 200, normal.body
    assert normal.json()["outputs"][0]["data"] == [20.0]
    baseline = rss(worker)

    # 800 MB for the ones alone, over the 256 MiB limit.
    huge = ask(gateway, 200_000_000)

    assert huge.status == 400, huge.body
    error = huge.json()["error"]
    assert error.startswith("the model could not run on this input: it needs more memory than a worker allows")
    assert "it asked for a buffer of 800000000 bytes; the limit of 268435456 bytes applies" in error
    assert settled_rss(worker, baseline + SLACK) <= baseline + SLACK

    # 80 MB of ones and 80 MB of output: within the limit, answered, and handed back after.
    big = ask(gateway, 20_000_000)

    assert big.status == 200, big.body
    assert big.json()["outputs"][0]["data"] == [40_000_000.0]
    assert settled_rss(worker, baseline + SLACK) <= baseline + SLACK

    again = ask(gateway, 10)
    assert again.status == 200, again.body
    assert again.json()["outputs"][0]["data"] == [20.0]
