"""onnxruntime's CPU memory for inference runs: capped per process, handed back after use.

By default every onnxruntime session has its own CPU arena that grows to the
largest run it has seen and keeps that memory for good. A model whose output
shape comes from an input value (ConstantOfShape, Expand, Range, Tile...) lets
a client ask for gigabytes: measured on a worker, RSS went from 214 MiB to
1,990 MiB on one such request and stayed there. Here instead:

- one arena for the whole process (`session.use_env_allocators`), capped at
  `limit` bytes (`max_mem`). An allocation that would pass the cap fails, and
  the run with it, with onnxruntime's "Available memory of A is smaller than
  requested bytes of R"; `memory_failure` reads those figures back. Weights are
  not in it (`session.use_device_allocator_for_initializers`): the cap is for
  what runs allocate (activations and outputs).
- every run shrinks the arena when it ends (`run_options`): regions no tensor
  uses any more are freed. The first region (`KEEP_BYTES`) is kept, so small
  models never give memory back only to fault it in again on the next run;
  that is why the arena grows in powers of two (onnxruntime never shrinks the
  first region of such an arena, and shrinks every region of the other kind,
  after which a run's small tensors land in a big free region and keep it),
  and why `cap` makes that first region with a tiny run at once (it is as
  large as the arena's first allocation).
  A run's outputs are still in use when it ends, so a big output is freed by
  the next run's shrink; `release` is such a run, on a tiny model of its own.

Shared by the workers (workers/runtime.py) and the validator's smoke test
(registry/validation.py), so an upload is checked against the limit it will run
under. No Django imports.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

# The arena's first region, kept across shrinks (only the pages a run touched count in RSS).
KEEP_BYTES = 32 * 1024 * 1024
# onnxruntime's arena extend strategies (OrtArenaCfg arena_extend_strategy).
NEXT_POWER_OF_TWO = 0

_lock = threading.Lock()
_limit: int | None = None
_releaser: Any = None

_ARENA_FULL = re.compile(r"Available memory of (\d+) is smaller than requested bytes of (\d+)")
_MALLOC_FAILED = re.compile(r"Failed to allocate memory for requested buffer of size (\d+)")


def cap(max_bytes: int) -> None:
    """Give this process one CPU arena of at most `max_bytes` for inference. Once per
    process: onnxruntime refuses to register a second one, so a later call with
    another limit keeps the first."""
    global _limit
    with _lock:
        if _limit is not None:
            return
        config = ort.OrtArenaCfg(
            {
                "max_mem": max_bytes,
                "arena_extend_strategy": NEXT_POWER_OF_TWO,
                "initial_chunk_size_bytes": min(KEEP_BYTES, max_bytes),
            }
        )
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, config)
        _limit = max_bytes
    # The arena's first region is the size of its first allocation, and is never
    # shrunk: a tiny run now makes it KEEP_BYTES, before any request could make
    # it as large as that request.
    release()


def limit() -> int | None:
    """The cap in bytes; None when `cap` was never called (onnxruntime's defaults apply)."""
    return _limit


def configure(options: ort.SessionOptions) -> None:
    """Make a session allocate from the capped arena (no-op without a cap)."""
    if _limit is None:
        return
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.add_session_config_entry("session.use_device_allocator_for_initializers", "1")


def run_options() -> ort.RunOptions | None:
    """Options for one run: shrink the arena when it ends (None without a cap)."""
    if _limit is None:
        return None
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def memory_failure(error: BaseException) -> tuple[int, int | None] | None:
    """(requested bytes, bytes that were still free under the cap, if known) when `error`
    is onnxruntime running out of memory; None for any other error."""
    message = str(error)
    full = _ARENA_FULL.search(message)
    if full:
        return int(full[2]), int(full[1])
    failed = _MALLOC_FAILED.search(message)
    if failed:
        return int(failed[1]), None
    return None


def release() -> None:
    """Hand back the regions that finished runs' outputs held: one tiny run that shrinks the arena."""
    global _releaser
    options = run_options()
    if options is None:
        return
    with _lock:
        if _releaser is None:
            _releaser = _identity_session()
    _releaser.run(None, {"x": np.zeros([1], dtype=np.float32)}, options)


def _identity_session() -> Any:
    """One Identity on a float, built here rather than shipped as a file."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "release",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    configure(options)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
