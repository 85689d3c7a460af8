"""Validation of a pipeline version: the wiring again, every stage loaded, and a smoke run
of the whole chain on generated inputs, before the registry marks the version ready.

Each stage's version passed its own validation; what can still go wrong is between them
(a stage that declares [-1, 8] and receives [2, 16] at run time, an output that loses
the batch dimension half-way). Runs as `python -m registry.pipeline_validation` in a
child process under the same limits as registry/validation.py. No Django imports.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from registry import custom_ops, inference_memory
from registry.pipelines import StageDeadlineExceeded, StageFailed, StagePlan, WiringError, execute, wire
from registry.signature import Signature, extract_signature
from registry.validation import (
    Refused,
    ValidationOutcome,
    ort_message,
    report,
    run_module_in_child,
    sample_tensor,
)

__all__ = ["run_pipeline_in_child", "validate_pipeline"]


def validate_pipeline(spec: dict[str, Any]) -> ValidationOutcome:
    """`spec`: {"stages": [{"name", "label", "path", "signature", "inputs", "timeout_ms"}],
    "outputs": {...}, "max_batch_size": n}. Never raises for a bad pipeline."""
    outcome = ValidationOutcome(ok=False)
    try:
        outcome.signature = _validate(spec, outcome.log)
    except Refused as refusal:
        outcome.reason = str(refusal)
        return outcome
    outcome.ok = True
    return outcome


def _validate(spec: dict[str, Any], log: list[str]) -> Signature:
    plans = [
        StagePlan(s["name"], s["signature"], s["inputs"], int(s.get("timeout_ms") or 0), s.get("label", ""))
        for s in spec["stages"]
    ]
    try:
        wiring = wire(plans, spec.get("outputs"))
    except WiringError as error:
        raise Refused(str(error)) from None
    log.append(f"wiring: {len(wiring.stages)} stages fit together by datatype and shape")

    runners = {}
    for stage, raw in zip(wiring.stages, spec["stages"], strict=True):
        session = _load(stage, raw["path"])
        runners[stage.name] = _checked_runner(stage, session)
        log.append(f"stage '{stage.name}' ({stage.label}): loaded")

    signature = wiring.signature
    batches: Sequence[int | None] = [None]
    if signature["batch_dim"]:
        max_batch = int(spec.get("max_batch_size") or 2)
        batches = sorted({1, 2, max_batch}) if max_batch > 2 else [1, 2]
    rng = np.random.default_rng(0)
    for batch in batches:
        at = f" at batch {batch}" if batch is not None else ""
        feeds = {s["name"]: sample_tensor(s, batch, rng) for s in signature["inputs"]}
        try:
            outputs, timings = execute(wiring, runners, feeds)
        except StageFailed as failure:
            raise Refused(f"smoke run{at}: {failure.error}") from None
        except StageDeadlineExceeded as late:  # no deadline is set here; kept for completeness
            raise Refused(f"smoke run{at}: {late}") from None
        for out_spec, array in zip(signature["outputs"], outputs, strict=True):
            shape = list(np.shape(array))
            if batch is not None and (not shape or shape[0] != batch):
                raise Refused(
                    f"smoke run{at}: pipeline output '{out_spec['name']}' (from '{wiring.outputs[out_spec['name']]}') "
                    f"has shape {shape}: one row per input row is needed to batch requests"
                )
        times = ", ".join(f"{t.stage} {t.ms:.1f} ms" for t in timings)
        log.append(f"smoke run{at}: ok ({times})")
    return signature


def _load(stage: StagePlan, path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    inference_memory.configure(options)
    custom_ops.enable(options)
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own unrelated exception classes
        raise Refused(
            f"stage '{stage.name}' ({stage.label}): onnxruntime could not load it: {ort_message(error)}"
        ) from None
    try:
        actual = extract_signature(session)
    except ValueError as error:
        raise Refused(f"stage '{stage.name}' ({stage.label}): {error}") from None
    if actual != stage.signature:
        raise Refused(f"stage '{stage.name}' ({stage.label}): its artifact no longer has the signature on record")
    return session


def _checked_runner(stage: StagePlan, session: ort.InferenceSession) -> Any:
    """Runs the stage after checking what it is fed against what it declares, so a
    mismatch names the stage, the tensor and where it came from."""
    declared = {spec["name"]: spec for spec in stage.signature["inputs"]}
    names = [spec["name"] for spec in stage.signature["outputs"]]

    def run(feeds: dict[str, Any], deadline: float | None) -> list[Any]:
        for name, array in feeds.items():
            shape, wanted = list(np.shape(array)), declared[name]["shape"]
            if len(shape) != len(wanted) or any(w not in (-1, a) for w, a in zip(wanted, shape, strict=True)):
                raise ValueError(
                    f"stage '{stage.name}' input '{name}' declares {wanted} but '{stage.inputs[name]}' gave {shape}"
                )
        quiet = inference_memory.run_options() or ort.RunOptions()
        quiet.log_severity_level = 4
        try:
            return list(session.run(names, feeds, quiet))
        except Exception as error:
            raise ValueError(f"stage '{stage.name}' ({stage.label}) failed: {ort_message(error)}") from None

    return run


def run_pipeline_in_child(
    spec: dict[str, Any], spec_path: str, timeout_s: float, memory_bytes: int, run_memory_bytes: int | None = None
) -> ValidationOutcome:
    """Validate in a child process under an address-space and CPU limit; `spec_path` is
    where to write the spec for it. Never raises for a bad pipeline."""
    with open(spec_path, "w") as handle:
        json.dump(spec, handle)
    return run_module_in_child(
        "registry.pipeline_validation", [spec_path], timeout_s, memory_bytes, [str(run_memory_bytes or 0)]
    )


def _main(argv: list[str]) -> int:
    spec_path, memory_bytes, cpu_s = argv[0], int(argv[1]), int(argv[2])
    # Limits first, as in registry/validation.py: everything the artifacts can influence runs after this.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    if len(argv) >= 4 and int(argv[3]) > 0:
        inference_memory.cap(int(argv[3]))

    def validate() -> ValidationOutcome:
        with open(spec_path) as handle:
            return validate_pipeline(json.load(handle))

    return report(validate)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
