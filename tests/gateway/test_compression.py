"""Compressed request bodies on /v2 and gzipped answers, against the in-process gateway and a
real worker-less model: what is refused happens before anything is queued."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest

from tests.support.v2 import Gateway

pytestmark = pytest.mark.django_db(transaction=True)


def body() -> bytes:
    return orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})


def test_unknown_content_encoding_is_415_naming_the_supported_ones(gateway: Gateway, ready_model: str) -> None:
    response = gateway.infer(ready_model, body(), headers={"content-encoding": "br"})
    assert response.status == 415
    assert "gzip or deflate" in response.json()["error"]
    assert response.headers["accept-encoding"] == "gzip, deflate"


def test_a_gzip_bomb_is_413_without_inflating_it_all(gateway: Gateway, ready_model: str, settings: Any) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "MAX_REQUEST_BYTES": 1024 * 1024}
    bomb = gzip.compress(b"\0" * (512 * 1024**2), compresslevel=9)  # 512 MiB of zeros in about 500 KiB
    assert len(bomb) < 1024 * 1024
    response = gateway.infer(ready_model, bomb, headers={"content-encoding": "gzip"})
    assert response.status == 413
    assert "inflates to more than the limit of 1048576 bytes" in response.json()["error"]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # a zlib stream, as HTTP defines deflate
        ("deflate", lambda raw: zlib.compress(raw)[2:-4]),  # raw deflate, as some clients send it
    ],
)
def test_compressed_bodies_are_validated_like_plain_ones(
    gateway: Gateway, ready_model: str, encoding: str, compress: Any
) -> None:
    # No worker serves the model: a body that passed validation waits for one; a bad one never does.
    broken = orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5], "data": [1] * 5}]})
    response = gateway.infer(ready_model, compress(broken), headers={"content-encoding": encoding})
    assert response.status == 400
    assert "dimension 1 is 5, the model expects 4" in response.json()["error"]


def test_corrupt_and_truncated_compressed_bodies_are_400(gateway: Gateway, ready_model: str) -> None:
    corrupt = gateway.infer(ready_model, b"not gzip at all", headers={"content-encoding": "gzip"})
    assert corrupt.status == 400
    assert "not valid gzip data" in corrupt.json()["error"]
    truncated = gateway.infer(ready_model, gzip.compress(body())[:-12], headers={"content-encoding": "gzip"})
    assert truncated.status == 400
    assert "ends before its compressed stream does" in truncated.json()["error"]


def test_large_answers_are_gzipped_for_clients_that_accept_it(
    gateway: Gateway, ready_model: str, settings: Any
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "GZIP_MIN_RESPONSE_BYTES": 64}
    plain = gateway.client.get(f"/v2/models/{ready_model}/config")
    assert plain.status == 200
    assert "content-encoding" not in plain.headers
    zipped = gateway.client.request("GET", f"/v2/models/{ready_model}/config", headers={"accept-encoding": "gzip"})
    assert zipped.status == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(zipped.body)) == plain.json()
    refused = gateway.client.request(
        "GET", f"/v2/models/{ready_model}/config", headers={"accept-encoding": "gzip;q=0, identity"}
    )
    assert "content-encoding" not in refused.headers
