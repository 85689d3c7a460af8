"""Validation of one uploaded ONNX file, before the registry marks a version ready.

No Django imports: `run_in_child` runs this module as `python -m registry.validation` in a
bare child process under memory and CPU limits, because a hostile or broken model can make
onnx or onnxruntime allocate without bound, spin, or crash the process that loads it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from registry import custom_ops, inference_memory
from registry.signature import Signature, TensorSpec, extract_signature, ort_type_to_datatype

__all__ = ["ValidationOutcome", "ort_type_to_datatype", "run_in_child", "validate_file"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A runtime error can carry a whole graph dump; the dashboard needs the first lines only.
MAX_MESSAGE_CHARS = 500


@dataclass
class ValidationOutcome:
    ok: bool
    reason: str = ""  # "" when ok; otherwise one sentence the uploader can act on
    log: list[str] = field(default_factory=list)
    signature: Signature | None = None
    opset: int | None = None  # default-domain opset
    ir_version: int | None = None
    producer: str = ""


class Refused(Exception):
    """A validation step failed; the message is the outcome's reason."""


def validate_file(path: str, max_bytes: int, max_batch_size: int | None = None) -> ValidationOutcome:
    """Run every check on the file at `path` in this process; never raises for a bad model.

    `max_batch_size`: the version's; the smoke inference also runs at it."""
    outcome = ValidationOutcome(ok=False)
    try:
        _validate(path, max_bytes, outcome, max_batch_size)
    except Refused as refusal:
        # The log ends at the last step that passed; the caller shows the reason after it.
        outcome.reason = str(refusal)
        return outcome
    outcome.ok = True
    return outcome


def _validate(path: str, max_bytes: int, outcome: ValidationOutcome, max_batch_size: int | None) -> None:
    log = outcome.log
    try:
        size = os.stat(path).st_size
    except OSError as error:
        raise Refused(f"the file cannot be read: {error.strerror}") from None
    if size > max_bytes:
        raise Refused(f"the file is {size} bytes, over the limit of {max_bytes} bytes")
    log.append(f"size: {size} bytes (limit {max_bytes})")

    model = _parse(path)
    outcome.ir_version = model.ir_version
    outcome.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    outcome.producer = f"{model.producer_name} {model.producer_version}".strip()
    log.append(f"parsed: ir_version {outcome.ir_version}, opset {outcome.opset}, producer '{outcome.producer}'")

    _reject_external_data(model)
    log.append("external data: none, every tensor is inside the file")

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise Refused(f"onnx.checker rejected the model: {first_line(error)}") from None
    except MemoryError:
        raise
    except Exception as error:  # e.g. protobuf's EncodeError when the copy for the checker hits the memory limit
        detail = f"{type(error).__name__}: {first_line(error)}"
        raise Refused(f"onnx.checker could not check the model ({detail})") from None
    log.append("onnx.checker (full check): passed")

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: warnings would drown the child's output
    inference_memory.configure(options)  # the workers' limit for inference, when the child was given it
    custom_ops.enable(options)
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own unrelated exception classes
        message = ort_message(error)
        ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", message)
        if ir:
            raise Refused(
                f"the model has IR version {ir[1]}, newer than this onnxruntime loads (at most {ir[2]}): "
                f"save it with an older IR version, e.g. set model.ir_version = {ir[2]} before saving"
            ) from None
        # The message names our temporary copy of the file, which means nothing to the uploader.
        message = message.replace(f"Load model from {path} failed:", "").strip()
        raise Refused(f"onnxruntime could not load the model: {message}") from None
    log.append(f"loaded in onnxruntime on {', '.join(session.get_providers())}")

    try:
        outcome.signature = extract_signature(session)
    except ValueError as error:
        raise Refused(str(error)) from None
    log.append(f"signature: {_describe(outcome.signature)}")

    log.append(_smoke_inference(session, outcome.signature))
    if outcome.signature["batch_dim"] and max_batch_size is not None and max_batch_size > 2:
        # A model can work at batch 2 and not at the batch size the workers will run.
        log.append(_smoke_inference(session, outcome.signature, max_batch_size))


def _parse(path: str) -> onnx.ModelProto:
    try:
        model = onnx.load(path, load_external_data=False)
    except MemoryError:
        raise  # not the file's fault as such: the child reports the memory limit
    except Exception as error:  # protobuf's DecodeError and friends
        raise Refused(f"the file is not a valid ONNX model: {first_line(error) or type(error).__name__}") from None
    # Protobuf happily decodes many non-ONNX byte strings into an empty message.
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise Refused("the file is not a valid ONNX model: it has no ir_version or no graph")
    return model


def _reject_external_data(model: onnx.ModelProto) -> None:
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not tensor.external_data:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        why = ""
        if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location[:3]:
            why = " is an absolute path, and"
        elif ".." in Path(location.replace("\\", "/")).parts:
            why = " points outside the model's folder with '..', and"
        raise Refused(
            f"tensor '{tensor.name}' keeps its data outside the file (location '{location}'){why} "
            "external data is not accepted: save the model with all tensors inside the file"
        )


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
            nodes.extend(graph.node)
            continue
        for attribute in nodes.pop().attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
                yield from (sparse.values, sparse.indices)
            if attribute.HasField("g"):
                graphs.append(attribute.g)
            graphs.extend(attribute.graphs)


def _smoke_inference(session: ort.InferenceSession, signature: Signature, max_batch_size: int | None = None) -> str:
    """One run on sample inputs: at batch 2 (when the model batches), or at `max_batch_size`."""
    batch = (max_batch_size or 2) if signature["batch_dim"] else None
    at = f" at batch {batch} (the version's max_batch_size)" if max_batch_size else ""
    rng = np.random.default_rng(0)
    feeds = {spec["name"]: sample_tensor(spec, batch, rng) for spec in signature["inputs"]}
    quiet = inference_memory.run_options() or ort.RunOptions()
    quiet.log_severity_level = 4  # the failure is reported in the outcome, not also on stderr
    try:
        results = session.run(None, feeds, quiet)
    except Exception as error:  # onnxruntime raises its own unrelated exception classes
        failure = inference_memory.memory_failure(error)
        if failure is not None:
            limit = inference_memory.limit()
            whose = (
                f"the workers' limit for inference of {limit} bytes (TURNOUT_WORKER_RUN_MEMORY_BYTES)"
                if limit is not None and failure[1] is not None
                else "the validator's memory limit"
            )
            advice = ": lower max_batch_size, or raise the limit" if max_batch_size else ""
            raise Refused(
                f"smoke inference{at} ran out of memory: the model asked for a buffer of {failure[0]} bytes, "
                f"more than {whose} allows{advice}"
            ) from None
        raise Refused(f"smoke inference{at} failed: {ort_message(error)}") from None
    described = []
    for spec, result in zip(signature["outputs"], results, strict=True):
        actual = list(np.shape(result))
        declared = spec["shape"]
        wrong = len(actual) != len(declared) or any(d not in (-1, a) for d, a in zip(declared, actual, strict=True))
        if batch is not None and not wrong and actual[0] != batch:
            raise Refused(
                f"smoke inference{at}: output '{spec['name']}' has first dimension {actual[0]} for a batch of "
                f"{batch} inputs, so the model does not batch along its first dimension"
            )
        if wrong:
            raise Refused(
                f"smoke inference{at}: output '{spec['name']}' came back with shape {actual}, "
                f"which does not match its declared shape {declared}"
            )
        described.append(f"{spec['name']}{actual}".replace(" ", ""))
    batch_note = f"batch {batch}, " if batch else ""
    return f"smoke inference: ok, {batch_note}outputs {', '.join(described)}"


def sample_tensor(spec: TensorSpec, batch: int | None, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    shape = [1 if dim < 0 else dim for dim in spec["shape"]]
    if batch is not None:
        shape[0] = batch
    datatype, count = spec["datatype"], math.prod(shape)
    if datatype == "BYTES":
        return np.full(shape, "a", dtype=object)
    if datatype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(shape)
    if datatype.startswith("FP"):
        # [0, 1) keeps log, sqrt, division and FP16 maths finite.
        return rng.random(shape).astype(_NUMPY[datatype])
    # 0 and 1 are valid as indices, class ids and token ids in any model.
    return rng.integers(0, 2, size=shape).astype(_NUMPY[datatype])


_NUMPY = {
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def _describe(signature: Signature) -> str:
    def tensors(specs: list[TensorSpec]) -> str:
        return ", ".join(f"{s['name']} {s['datatype']}{s['shape']}".replace(" [", "[") for s in specs) or "none"

    batching = "batches on the first dimension" if signature["batch_dim"] else "no batch dimension"
    return f"inputs {tensors(signature['inputs'])}; outputs {tensors(signature['outputs'])}; {batching}"


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:MAX_MESSAGE_CHARS] if str(error).strip() else ""


def ort_message(error: BaseException) -> str:
    # The error code, the source file and the C++ signature in onnxruntime's messages say nothing to the uploader.
    message = " ".join(str(error).split())
    if message.startswith("[ONNXRuntimeError]"):
        message = message.split(" : ", 3)[-1]
    message = re.sub(r"/onnxruntime_src/\S+:\d+ (?:[^()]*\([^()]*\)(?: const)? )?", "", message)
    node = re.match(
        r"Non-zero status code returned while running (\w+) node\. Name:'([^']*)' Status Message: ",
        message,
    )
    if node:
        name = f" '{node[2]}'" if node[2] else ""
        message = f"the {node[1]} node{name} failed: {message[node.end() :]}"
    return message[:MAX_MESSAGE_CHARS] or type(error).__name__


def run_in_child(
    path: str,
    max_bytes: int,
    timeout_s: float,
    memory_bytes: int,
    max_batch_size: int | None = None,
    run_memory_bytes: int | None = None,
) -> ValidationOutcome:
    """Validate in a child process under an address-space and CPU limit; never raises for a bad model.

    `max_batch_size`: the version's, for a second smoke inference; `run_memory_bytes`: the
    workers' limit for inference (TURNOUT_WORKER_RUN_MEMORY_BYTES), which the smoke runs obey."""
    return run_module_in_child(
        "registry.validation",
        [path, str(max_bytes)],
        timeout_s,
        memory_bytes,
        [str(max_batch_size or 0), str(run_memory_bytes or 0)],
    )


def run_module_in_child(
    module: str, head: list[str], timeout_s: float, memory_bytes: int, tail: list[str], what: str = "validation"
) -> ValidationOutcome:
    """`python -m module *head memory_bytes cpu_s *tail` in a child that limits itself (see `_main`),
    whose last stdout line is the outcome as JSON; never raises for a bad model. `what` names the
    work in the reasons for a child stopped by its limits."""
    process_name = "validator" if what == "validation" else what
    payload, reason, log = run_json_child(module, head, timeout_s, memory_bytes, tail, what, process_name)
    if payload is None:
        return ValidationOutcome(ok=False, reason=reason, log=log)
    try:
        return ValidationOutcome(**payload)
    except TypeError:
        return ValidationOutcome(ok=False, reason="the validator's answer could not be read", log=log)


def run_json_child(
    module: str,
    head: list[str],
    timeout_s: float,
    memory_bytes: int,
    tail: list[str],
    task: str = "validation",
    process_name: str = "validator",
) -> tuple[dict[str, Any] | None, str, list[str]]:
    """Run `python -m module *head memory_bytes cpu_s *tail` in a child that limits itself: its last
    stdout line that is a JSON object, or None with why the child gave none (naming the `task` and
    the `process_name`) and its last stderr lines."""
    cpu_s = math.ceil(timeout_s) + 1
    # One thread each: the limit is per process, and thread pools multiply stacks and arenas.
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    process = subprocess.Popen(  # noqa: S603 -- fixed argv: our interpreter, our module, paths we stored
        [sys.executable, "-m", module, *head, str(memory_bytes), str(cpu_s), *tail],
        cwd=PROJECT_ROOT,
        env={**os.environ, **threads},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # The child leads its own session, so this reaches anything it started too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, f"{task} took longer than {timeout_s:g} s and was stopped", []

    for line in reversed(stdout.decode(errors="replace").splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict):
            return found, "", []

    log = [f"{process_name} stderr: {line}" for line in stderr.decode(errors="replace").strip().splitlines()[-5:]]
    code = process.returncode
    if code == -signal.SIGXCPU:
        return None, f"the {process_name} process used more than its CPU time limit of {cpu_s} s and was stopped", log
    how = f"signal {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"exit code {code}"
    reason = f"the {process_name} process died ({how}), likely from exceeding the memory limit of {memory_bytes} bytes"
    return None, reason, log


def _main(argv: list[str]) -> int:
    path, max_bytes = argv[0], int(argv[1])
    # The child limits itself before it reads the file: a preexec_fn would do it
    # before exec, but Python warns that it is unsafe in a threaded parent, and
    # the inference workers run Celery's thread pool. The imports above are
    # trusted code; everything the uploaded file can influence runs after this.
    if len(argv) >= 4:
        memory_bytes, cpu_s = int(argv[2]), int(argv[3])
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    max_batch_size = int(argv[4]) if len(argv) >= 5 and int(argv[4]) > 0 else None
    if len(argv) >= 6 and int(argv[5]) > 0:
        inference_memory.cap(int(argv[5]))
    return report(lambda: validate_file(path, max_bytes, max_batch_size))


def report(validate: Callable[[], ValidationOutcome], what: str = "validation") -> int:
    """A child's last step: the outcome of `validate` as one JSON line on stdout, the channel to
    `run_module_in_child`, whatever went wrong."""
    try:
        outcome = validate()
    except MemoryError:
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        outcome = ValidationOutcome(ok=False, reason=f"{what} ran out of memory (limit {limit} bytes)")
    except Exception as error:
        outcome = ValidationOutcome(ok=False, reason=f"{what} failed unexpectedly: {first_line(error)}")
    print(json.dumps(asdict(outcome)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
