"""Shapes that name more elements than any tensor could hold are refused at the gateway.

A zero dimension makes a tensor empty whatever its other dimensions say, so its
data checks pass; but `[1, 0, 2**62]` cannot be built by numpy on the worker (its
non-zero dimensions multiply past what an array may address). The gateway refuses
any shape whose non-zero dimensions multiply past MAX_ELEMENTS, with 400.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.protocol import MAX_ELEMENTS, ProtocolError, parse_request

# A dynamic model: every dimension of its input is free.
DYNAMIC: dict[str, Any] = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, -1, -1]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, -1, -1]}],
    "batch_dim": True,
}


def request(shape: list[int], data: list[float] | None = None) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": shape, "data": data or []}]})


@pytest.mark.parametrize("shape", [[1, 0, 2**62], [1, 0, 2**63 - 1], [1, 2**40, 0], [1, 0, MAX_ELEMENTS + 1]])
def test_a_shape_whose_non_zero_dimensions_overflow_is_refused_with_400(shape: list[int]) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_request(request(shape), None, DYNAMIC, max_batch_size=8)

    assert refused.value.status == 400
    assert "too many elements" in refused.value.message


def test_empty_tensors_of_sensible_shapes_still_pass() -> None:
    parsed = parse_request(request([1, 0, 4]), None, DYNAMIC, max_batch_size=8)
    assert parsed.inputs[0].shape == [1, 0, 4]
    parsed = parse_request(request([1, 0, MAX_ELEMENTS]), None, DYNAMIC, max_batch_size=8)
    assert parsed.inputs[0].raw == b""
