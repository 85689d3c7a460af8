"""The comparison's child process: `python -m variants.compare_child variant baseline memory cpu
max_batch rows seed signature.json`; its last stdout line is the result as JSON
({"ok": true, "result": {...}} or {"ok": false, "reason": "..."}). It limits itself before it
reads either file, as the validator does (registry/validation.py `_main`)."""

from __future__ import annotations

import json
import resource
import sys

import onnxruntime as ort

from registry import custom_ops
from registry.validation import first_line, ort_message
from variants.comparison import compare


def session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # timings comparable between the two, whatever the host
    custom_ops.enable(options)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main(argv: list[str]) -> int:
    variant_path, baseline_path, memory_bytes, cpu_s = argv[0], argv[1], int(argv[2]), int(argv[3])
    max_batch_size, rows, seed = int(argv[4]), int(argv[5]), int(argv[6])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    with open(argv[7]) as handle:
        signature = json.load(handle)
    try:
        try:
            variant, baseline = session(variant_path), session(baseline_path)
        except Exception as error:  # an artifact onnxruntime cannot load
            print(json.dumps({"ok": False, "reason": f"a version could not be loaded: {ort_message(error)}"}))
            return 0
        result = compare(variant, baseline, signature, max_batch_size, rows, seed)
        print(json.dumps({"ok": True, "result": result}), flush=True)
    except MemoryError:
        print(json.dumps({"ok": False, "reason": f"the comparison ran out of memory (limit {memory_bytes} bytes)"}))
    except Exception as error:
        print(json.dumps({"ok": False, "reason": f"the comparison failed: {first_line(error)}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
