"""The custom operators every Turnout session may use: onnxruntime-extensions'
(domain `ai.onnx.contrib`: tokenizers, string operations, image decoding), so that
pre- and postprocessing are ONNX graphs and workers never run uploaded code.

Registered on every session the validator and the workers create, so a graph that
validated is a graph that loads. No Django imports.
"""

from __future__ import annotations

import onnxruntime as ort
from onnxruntime_extensions import get_library_path

DOMAIN = "ai.onnx.contrib"
_LIBRARY = get_library_path()


def enable(options: ort.SessionOptions) -> None:
    options.register_custom_ops_library(_LIBRARY)
