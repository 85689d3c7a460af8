"""Raw onnxruntime: each benchmark model, and the sentiment pipeline's stages back to back, run in
this process without Turnout: the limit the served figures are measured against."""

from __future__ import annotations

import time
from typing import Any

from results import Raw


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _timed_runs(session: Any, feed: dict[str, Any], seconds: float) -> tuple[float, list[float]]:
    """Samples per second and per-call latencies, after a short warm-up."""
    batch = next(iter(feed.values())).shape[0]
    warm_until = time.perf_counter() + min(1.0, seconds / 3)
    while time.perf_counter() < warm_until:
        session.run(["output"], feed)
    latencies: list[float] = []
    started = now = time.perf_counter()
    end = started + seconds
    while now < end:
        session.run(["output"], feed)
        latest = time.perf_counter()
        latencies.append(latest - now)
        now = latest
    return len(latencies) * batch / (now - started), latencies


SENTENCE = "What a great movie, I loved every minute of it"


def measure_raw_pipeline(seconds: float) -> Raw:
    """The sentiment pipeline's stages back to back in this process, as a worker runs them (the
    chain of registry/pipelines.py `execute`), with onnxruntime-extensions' operators."""
    import numpy as np
    import onnxruntime as ort

    from registry import custom_ops, demo_pipeline
    from registry.pipelines import StagePlan, execute, wire
    from registry.signature import extract_signature

    def sessions(threads: int) -> tuple[Any, dict[str, Any]]:
        plans, runners = [], {}
        for stage, _, build in demo_pipeline.SENTIMENT_STAGES:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            custom_ops.enable(options)
            session = ort.InferenceSession(build(), sess_options=options, providers=["CPUExecutionProvider"])
            plans.append(StagePlan(stage, extract_signature(session)))
            runners[stage] = lambda feeds, deadline, s=session: s.run(None, feeds)
        outputs = {out: f"{stage}.{tensor}" for out, (stage, tensor) in demo_pipeline.SENTIMENT_OUTPUTS.items()}
        return wire(plans, outputs), runners

    class Chain:
        def __init__(self, threads: int) -> None:
            self.wiring, self.runners = sessions(threads)

        def run(self, _names: Any, feed: dict[str, Any]) -> Any:
            return execute(self.wiring, self.runners, feed)

    one = {"text": np.array([SENTENCE], dtype=object)}
    many = {"text": np.array([SENTENCE] * 64, dtype=object)}
    chain = Chain(0)
    b1_sps, b1_latencies = _timed_runs(chain, one, seconds)
    b64_sps, _ = _timed_runs(chain, many, seconds)
    b64_single, _ = _timed_runs(Chain(1), many, seconds)
    return Raw(b1_sps, b64_sps, percentile(b1_latencies, 50) * 1000, b64_single)


def measure_raw(artifact: bytes, input_dim: int, seconds: float) -> Raw:
    """The model alone in this process: default session options (the bars' reference), and for
    context batch 64 with one intra-op thread, as the benchmark's worker runs it."""
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    one = {"input": rng.standard_normal((1, input_dim)).astype(np.float32)}
    many = {"input": rng.standard_normal((64, input_dim)).astype(np.float32)}
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    b1_sps, b1_latencies = _timed_runs(session, one, seconds)
    b64_sps, _ = _timed_runs(session, many, seconds)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    single = ort.InferenceSession(artifact, sess_options=options, providers=["CPUExecutionProvider"])
    b64_single, _ = _timed_runs(single, many, seconds)
    return Raw(b1_sps, b64_sps, percentile(b1_latencies, 50) * 1000, b64_single)
