"""The capacity report's child process: `python -m variants.capacity_child artifact memory cpu
max_batch p99_target_ms seed signature.json`; its last stdout line is the result as JSON. It
limits itself before it reads the file (registry/validation.py `_main`), and runs onnxruntime on
one thread, so it takes at most one core of the worker while it runs."""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from registry.validation import first_line, ort_message
from variants.capacity import recommend, settings_to_try, sweep
from variants.compare_child import session
from variants.comparison import inputs_for


def main(argv: list[str]) -> int:
    path, memory_bytes, cpu_s = argv[0], int(argv[1]), int(argv[2])
    max_batch_size, p99_target_ms, seed = int(argv[3]), float(argv[4]), int(argv[5])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    with open(argv[6]) as handle:
        signature = json.load(handle)
    try:
        try:
            model = session(path)
        except Exception as error:
            print(json.dumps({"ok": False, "reason": f"the version could not be loaded: {ort_message(error)}"}))
            return 0
        batched = bool(signature.get("batch_dim"))
        feeds = inputs_for(signature, max_batch_size if batched else 1, seed)
        names = [o.name for o in model.get_outputs()]

        def run(rows: int) -> float:
            sample = {k: v[:rows] for k, v in feeds.items()} if batched else feeds
            started = time.perf_counter()
            model.run(names, sample)
            return time.perf_counter() - started

        run(max_batch_size if batched else 1)  # warm-up
        full = min(run(max_batch_size if batched else 1) for _ in range(5))
        capacity_rps = (max_batch_size if batched else 1) / full
        results: list[dict[str, Any]] = []
        for setting in settings_to_try(max_batch_size, batched):
            results.append(
                {
                    "max_batch_size": setting.max_batch_size,
                    "max_queue_delay_ms": setting.max_queue_delay_ms,
                    "points": sweep(run, setting, capacity_rps, seed),
                }
            )
        result = {
            "p99_target_ms": p99_target_ms,
            "estimated_capacity_rps": capacity_rps,
            "settings": results,
            "recommendation": recommend(results, p99_target_ms),
        }
        print(json.dumps({"ok": True, "result": result}), flush=True)
    except MemoryError:
        print(json.dumps({"ok": False, "reason": f"the capacity run ran out of memory (limit {memory_bytes} bytes)"}))
    except Exception as error:
        print(json.dumps({"ok": False, "reason": f"the capacity run failed: {first_line(error)}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
