"""The per-request baselines `make bench` measures Turnout against: the FastAPI service a team
writes by hand when it does not adopt a serving platform. Each uvicorn worker process holds one
onnxruntime session per model and runs it inside the request handler: no queue, no batching,
no keys, rate limits, validation beyond the tensor's shape, metrics or access log. Both speak
enough of the V2 protocol (JSON) for bench/post.lua's bodies. Two shapes of it, on one server:

- `/v2/models/{name}/infer`, the usual one (the FastAPI documentation's idiom, and the shape of
  the V2 servers written on FastAPI): pydantic models for the request and the response and a
  plain `def` handler, which FastAPI runs in its thread pool because onnxruntime blocks. This is
  the "per-request" baseline the hot-path goals are ratios against.
- `/lean/v2/models/{name}/infer`, the fastest shape found for it on this machine: an `async def`
  handler that calls onnxruntime directly (a thread-pool hop per request costs more than
  mlp_small itself) and orjson instead of pydantic. Reported beside it, so the table also says
  how far a hand-tuned service goes.

Both run under uvicorn with httptools and uvloop, one intra-op thread per worker (two workers on
two cores), as Turnout's own worker runs.

    BENCH_MODEL_DIR=bench/out/baseline-models uvicorn per_request:app --app-dir bench --workers 2

`run.py` (measure_baseline, in load.py) writes each model's artifact to BENCH_MODEL_DIR as
`<name>.onnx` and starts it with `PerRequestServer`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def _sessions(directory: Path) -> dict[str, tuple[ort.InferenceSession, str, list[str]]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("BENCH_INTRA_OP_THREADS", "1"))
    out: dict[str, tuple[ort.InferenceSession, str, list[str]]] = {}
    for path in sorted(directory.glob("*.onnx")):
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        out[path.stem] = (session, session.get_inputs()[0].name, [o.name for o in session.get_outputs()])
    return out


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
MODELS = _sessions(Path(os.environ["BENCH_MODEL_DIR"])) if os.environ.get("BENCH_MODEL_DIR") else {}


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")


@app.get("/v2/health/ready")
async def ready() -> Response:
    return Response(status_code=200)


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[Tensor]


class InferResponse(BaseModel):
    model_name: str
    id: str | None = None
    outputs: list[Tensor]


@app.post("/v2/models/{name}/infer")
def infer(name: str, request: InferRequest) -> InferResponse:
    model = MODELS.get(name)
    if model is None:
        raise HTTPException(404, f"unknown model {name!r}")
    session, input_name, output_names = model
    tensor = request.inputs[0]
    try:
        array = np.asarray(tensor.data, dtype=_DTYPES[tensor.datatype]).reshape(tensor.shape)
    except (KeyError, ValueError) as exc:
        raise HTTPException(400, f"bad tensor: {exc}") from exc
    results = session.run(output_names, {input_name: array})
    outputs = [
        Tensor(name=out, datatype="FP32", shape=list(value.shape), data=value.ravel().tolist())
        for out, value in zip(output_names, results, strict=True)
    ]
    return InferResponse(model_name=name, id=request.id, outputs=outputs)


@app.post("/lean/v2/models/{name}/infer")
async def infer_lean(name: str, request: Request) -> Response:
    model = MODELS.get(name)
    if model is None:
        return _error(404, f"unknown model {name!r}")
    session, input_name, output_names = model
    try:
        body = orjson.loads(await request.body())
        tensor = body["inputs"][0]
        array = np.asarray(tensor["data"], dtype=_DTYPES[tensor["datatype"]]).reshape(tensor["shape"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        return _error(400, f"bad request: {exc}")
    results = session.run(output_names, {input_name: array})
    outputs = [
        {"name": out, "datatype": "FP32", "shape": list(value.shape), "data": value.ravel().tolist()}
        for out, value in zip(output_names, results, strict=True)
    ]
    answer: dict[str, Any] = {"model_name": name, "outputs": outputs}
    if "id" in body:
        answer["id"] = body["id"]
    return Response(orjson.dumps(answer), media_type="application/json")


class PerRequestServer:
    """The baseline as its own uvicorn processes on a free port, for the duration of a `with`."""

    def __init__(self, models: dict[str, bytes], directory: Path, port: int, workers: int = 2) -> None:
        self.directory = directory
        self.port = port
        self.workers = workers
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.onnx"):
            stale.unlink()
        for name, artifact in models.items():
            (directory / f"{name}.onnx").write_bytes(artifact)
        self.log = directory / "server.log"

    def __enter__(self) -> PerRequestServer:
        args = [
            str(Path(sys.executable).parent / "uvicorn"),
            "per_request:app",
            "--app-dir",
            str(Path(__file__).parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        env = dict(os.environ, BENCH_MODEL_DIR=str(self.directory))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own executable)
                args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the per-request baseline exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as answer,  # noqa: S310
            ):
                if answer.status == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the per-request baseline did not answer in 60 s; see {self.log}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """uvicorn's worker processes (the ones that serve), not its supervisor."""
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in children.read_text().split()]
        return []

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
