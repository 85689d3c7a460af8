"""The gateway-to-worker stream entry: what goes in comes out, across versions."""

from __future__ import annotations

import numpy as np
import orjson

from dataplane.wire import decode_request, encode_request


def test_a_request_entry_round_trips_with_its_enqueue_time_in_microseconds() -> None:
    features = np.arange(6, dtype=np.float32).reshape(2, 3)
    fields = encode_request(
        "k1", "replies", 2_000_000, 1_700_000_000_123.456, [("x", "FP32", [2, 3], features.tobytes())], None
    )

    request = decode_request(b"1-0", fields)

    assert (request.request_id, request.reply_to, request.deadline_ms) == ("k1", "replies", 2_000_000)
    assert request.enqueued_ms == 1_700_000_000_123.456
    np.testing.assert_array_equal(request.inputs["x"], features)


def test_an_entry_from_an_older_gateway_still_decodes() -> None:
    """Whole milliseconds, or no enqueue time at all: a rolling upgrade mixes both."""
    raw = np.zeros((1, 3), dtype=np.float32).tobytes()
    for header, enqueued in (({"e": 1_700_000_000_123}, 1_700_000_000_123), ({}, 0)):
        fields = {
            b"h": orjson.dumps({"i": "k", "r": "q", "d": 5, "o": None, "t": [["x", "FP32", [1, 3]]], **header}),
            b"0": raw,
        }
        assert decode_request(b"1-0", fields).enqueued_ms == enqueued


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def entry(**header: object) -> dict[bytes, bytes]:
    raw = np.zeros((1, 3), dtype=np.float32).tobytes()
    base = {"i": "k", "r": "q", "d": 5, "o": None, "t": [["x", "FP32", [1, 3]]]}
    return {b"h": orjson.dumps({**base, **header}), b"0": raw}


def test_a_malformed_traceparent_costs_the_request_its_trace_not_its_answer() -> None:
    for malformed in ("garbage", TRACEPARENT.upper(), TRACEPARENT + "-extra", 42, ["00"], None):
        request = decode_request(b"1-0", entry(tp=malformed))

        assert request.traceparent is None
        assert request.request_id == "k"


def test_only_a_sampled_request_carries_its_traceparent_to_the_worker() -> None:
    tensors = [("x", "FP32", [1, 3], np.zeros((1, 3), dtype=np.float32).tobytes())]

    plain = encode_request("k1", "replies", 5, 1.0, tensors, None)
    sampled = encode_request("k2", "replies", 5, 1.0, tensors, None, TRACEPARENT)

    assert b'"tp"' not in plain[b"h"]  # nothing on the wire while tracing is off or not sampled
    assert decode_request(b"1-0", plain).traceparent is None
    assert decode_request(b"2-0", sampled).traceparent == TRACEPARENT


def test_an_entry_from_a_gateway_before_tracing_still_decodes() -> None:
    assert decode_request(b"1-0", entry()).traceparent is None
