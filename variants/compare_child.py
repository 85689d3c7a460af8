"""The comparison's child process: `python -m variants.compare_child variant baseline memory cpu
max_batch rows seed signature.json`; its last stdout line is the result as JSON
({"ok": true, "result": {...}} or {"ok": false, "reason": "..."}). It limits itself before it
reads either file (variants/child.py)."""

from __future__ import annotations

import json
import sys

from variants.child import answer, limit, session
from variants.comparison import compare


def main(argv: list[str]) -> int:
    variant_path, baseline_path, memory_bytes, cpu_s = argv[0], argv[1], int(argv[2]), int(argv[3])
    max_batch_size, rows, seed = int(argv[4]), int(argv[5]), int(argv[6])
    limit(memory_bytes, cpu_s)
    with open(argv[7]) as handle:
        signature = json.load(handle)

    def work() -> dict[str, object]:
        variant, baseline = session(variant_path, "a version"), session(baseline_path, "a version")
        return compare(variant, baseline, signature, max_batch_size, rows, seed)

    return answer("the comparison", memory_bytes, work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
