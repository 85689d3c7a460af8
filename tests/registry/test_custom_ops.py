"""Loading the custom operators leaves protobuf compiled, in this process and the ones it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import os, sys
import registry.custom_ops
from google.protobuf.internal import api_implementation
print(api_implementation.Type(), os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"))
"""


def probe(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_onnxruntime_extensions_through_custom_ops_keeps_the_compiled_protobuf() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    # onnxruntime-extensions sets the variable to "python" on import; children would inherit it.
    assert probe(env) == "upb None"


def test_an_operators_own_choice_of_protobuf_implementation_is_kept() -> None:
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    assert probe(env) == "python python"
