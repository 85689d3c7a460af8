"""The custom operators every Turnout session may use: onnxruntime-extensions'
(domain `ai.onnx.contrib`: tokenizers, string operations, image decoding), so that
pre- and postprocessing are ONNX graphs and workers never run uploaded code.

Registered on every session the validator and the workers create, so a graph that
validated is a graph that loads. No Django imports.
"""

from __future__ import annotations

import os

import onnxruntime as ort

# onnxruntime-extensions sets PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python when imported: protobuf
# in this process, if not yet imported, and in every process it starts would then be the pure-Python
# one (measured: the gRPC server spent 10 % of its CPU in it). protobuf picks its implementation
# once, on first import: pick the compiled one first, and give the environment back as it was.
from google.protobuf.internal import api_implementation  # noqa: F401  (before the next import)

_PROTOBUF_IMPLEMENTATION = os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION")
from onnxruntime_extensions import get_library_path  # noqa: E402

if _PROTOBUF_IMPLEMENTATION is None:
    os.environ.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
else:
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = _PROTOBUF_IMPLEMENTATION

DOMAIN = "ai.onnx.contrib"
_LIBRARY = get_library_path()


def enable(options: ort.SessionOptions) -> None:
    options.register_custom_ops_library(_LIBRARY)
