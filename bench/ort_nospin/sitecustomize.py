"""Experiment for `bench/run.py --worker-spinning off`: the worker's onnxruntime sessions
with intra-op thread spinning disabled (session.intra_op.allow_spinning=0), without
editing workers/runtime.py. On PYTHONPATH of the benchmark's worker process only."""

from __future__ import annotations

from typing import Any

try:
    import onnxruntime as _ort
except ImportError:  # not a worker environment
    _ort = None

if _ort is not None:
    _Base = _ort.InferenceSession

    class _NoSpinSession(_Base):  # type: ignore[misc, valid-type]
        def __init__(self, path_or_bytes: Any, sess_options: Any = None, *args: Any, **kwargs: Any) -> None:
            options = sess_options if sess_options is not None else _ort.SessionOptions()
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            super().__init__(path_or_bytes, options, *args, **kwargs)

    _ort.InferenceSession = _NoSpinSession
