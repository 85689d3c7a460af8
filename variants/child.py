"""What the comparison and capacity children share (variants/compare_child.py,
variants/capacity_child.py): limiting themselves before they read a file, as the validator does
(registry/validation.py `_main`), their onnxruntime sessions, and their one-line JSON answer to
the parent (`registry.validation.run_json_child`)."""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from typing import Any

import onnxruntime as ort

from registry import custom_ops
from registry.validation import first_line, ort_message


class Unloadable(Exception):
    """An artifact onnxruntime cannot load; the message says which."""


def limit(memory_bytes: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))


def session(path: str, which: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # timings comparable between runs and versions, whatever the host
    custom_ops.enable(options)
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise Unloadable(f"{which} could not be loaded: {ort_message(error)}") from None


def answer(what: str, memory_bytes: int, work: Callable[[], dict[str, Any]]) -> int:
    """Print `work`'s result, or why there is none, as the last stdout line: {"ok", "result" | "reason"}."""
    try:
        found: dict[str, Any] = {"ok": True, "result": work()}
    except Unloadable as error:
        found = {"ok": False, "reason": str(error)}
    except MemoryError:
        found = {"ok": False, "reason": f"{what} ran out of memory (limit {memory_bytes} bytes)"}
    except Exception as error:
        found = {"ok": False, "reason": f"{what} failed: {first_line(error)}"}
    print(json.dumps(found), flush=True)
    return 0
