"""bench/grpc_h2load.py reads h2load's figures and refuses a run whose calls failed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import grpc_h2load

from gateway.grpc_generated import grpc_predict_v2_pb2 as pb

OUTPUT = """
finished in 6.00s, 1270.20 req/s, 550.59KB/s
requests: {done} total, {done} started, {done} done, {done} succeeded, 0 failed, 0 errored, 0 timeout
status codes: {done} 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.69MB (2819018) total, 22.45KB (22986) headers (space savings 96.20%), 772.43KB ({data}) data
"""


def test_the_figures_of_a_run_whose_calls_all_answered() -> None:
    figures = grpc_h2load.figures(OUTPUT.format(done=100, data=100 * 106), [1000 * i for i in range(1, 101)], 106)

    assert figures.rps == 1270.2
    assert figures.requests == 100
    assert figures.p50_ms == 51.0  # the log's durations are in microseconds
    assert figures.p99_ms == 100.0
    assert figures.mean_ms == pytest.approx(50.5)


def test_calls_answered_with_a_status_and_no_message_fail_the_run() -> None:
    # h2load counts a gRPC error as a 200: its answer is trailers only, no message bytes.
    with pytest.raises(grpc_h2load.H2LoadError, match="about 50 of 100 calls answered"):
        grpc_h2load.figures(OUTPUT.format(done=100, data=50 * 106), [1000] * 100, 106)


def test_a_message_is_framed_as_grpc_sends_it() -> None:
    assert grpc_h2load.framed(b"abc") == b"\x00\x00\x00\x00\x03abc"
    request = pb.ModelInferRequest.FromString(grpc_h2load.infer_request("m", 4))
    assert request.model_name == "m"
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [("input", "FP32", [1, 4])]
    assert [len(raw) for raw in request.raw_input_contents] == [16]  # four FP32 values
