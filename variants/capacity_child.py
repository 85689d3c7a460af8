"""The capacity report's child process: `python -m variants.capacity_child artifact memory cpu
max_batch p99_target_ms seed signature.json`; its last stdout line is the result as JSON. It
limits itself before it reads the file (variants/child.py), and runs onnxruntime on one thread,
so it takes at most one core of the worker while it runs."""

from __future__ import annotations

import json
import sys

from variants.capacity import measure
from variants.child import answer, limit, session


def main(argv: list[str]) -> int:
    path, memory_bytes, cpu_s = argv[0], int(argv[1]), int(argv[2])
    max_batch_size, p99_target_ms, seed = int(argv[3]), float(argv[4]), int(argv[5])
    limit(memory_bytes, cpu_s)
    with open(argv[6]) as handle:
        signature = json.load(handle)
    return answer(
        "the capacity run",
        memory_bytes,
        lambda: measure(session(path, "the version"), signature, max_batch_size, p99_target_ms, seed),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
