"""Speaking the Open Inference Protocol to the in-process gateway: request
bodies (JSON and the binary tensor data extension) and waiting for readiness."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from tests.support.asgi import AsgiClient, AsgiResponse, http_scope

NOT_LOADED = "not loaded (loads on first use)"


def infer_path(model: str, version: int | str | None = None) -> str:
    if version is None:
        return f"/v2/models/{model}/infer"
    return f"/v2/models/{model}/versions/{version}/infer"


def binary_request(header: dict[str, Any], blobs: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    """The JSON header, then each input's raw bytes, as the binary extension lays them out."""
    head = orjson.dumps(header)
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}
    return head + b"".join(blobs), headers


def split_binary_response(response: AsgiResponse) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The JSON header of a binary response, and each binary output's raw bytes by name."""
    length = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.body[:length])
    blobs: dict[str, bytes] = {}
    offset = length
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            blobs[output["name"]] = response.body[offset : offset + size]
            offset += size
    assert offset == len(response.body), "bytes left over after the binary outputs"
    return header, blobs


def bytes_elements(items: Sequence[bytes]) -> bytes:
    """BYTES in binary: each element a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def parse_bytes_elements(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return items


def tensor(name: str, datatype: str, array: np.ndarray, nested: bool = False) -> dict[str, Any]:
    data = array.tolist() if nested else array.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def ready_status(client: AsgiClient) -> tuple[int, dict]:
    """`/v2/health/ready`: its status and its body."""
    response = client.get("/v2/health/ready")
    return response.status, response.json()


class Gateway:
    """The V2 endpoints of an in-process gateway."""

    def __init__(self, client: AsgiClient, app: Any) -> None:
        self.client = client
        self.app = app

    def infer(self, model: str, body: Any, version: int | str | None = None, **kwargs: Any) -> AsgiResponse:
        return self.client.loop.run_until_complete(self.ainfer(model, body, version, **kwargs))

    def settle(self, seconds: float = 0.2) -> None:
        """Run the gateway's event loop for `seconds`, so that what it does after an answer (a
        response cache store, a kept answer) is done, as a served process's always-running loop
        would do it; a plain sleep leaves this in-process loop stopped."""
        self.client.loop.run_until_complete(asyncio.sleep(seconds))

    async def ainfer(
        self, model: str, body: Any, version: int | str | None = None, headers: dict[str, str] | None = None
    ) -> AsgiResponse:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        all_headers = {"content-type": "application/json", **(headers or {})}
        return await self.client.arequest("POST", infer_path(model, version), raw, all_headers)

    def get(self, path: str) -> AsgiResponse:
        return self.client.get(path)

    def wait_loaded(self, model: str, version: int, workers: Any, timeout: float = 60) -> dict[str, str]:
        """Until the version answers ready and every live worker has loaded it; its execution providers."""
        deadline = time.monotonic() + timeout
        path = f"/v2/models/{model}/versions/{version}/ready"
        expected = len(workers.alive())
        last: AsgiResponse | None = None
        while time.monotonic() < deadline:
            last = self.client.get(path)
            if last.status == 200:
                providers = last.json()["execution_providers"]
                if len(providers) >= expected and NOT_LOADED not in providers.values():
                    return dict(providers)
            time.sleep(0.05)
        detail = last.body.decode(errors="replace") if last else "no answer"
        raise AssertionError(f"{model} v{version} not loaded within {timeout} s: {detail}\n{workers.log()}")


async def exchange(app: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[AsgiResponse, int]:
    """One request to an ASGI app, and how many responses it started (exactly one is right)."""
    scope = http_scope(method, path, body, headers)
    received = False
    starts = 0
    response = AsgiResponse(status=0, headers={})
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal starts
        if message["type"] == "http.response.start":
            starts += 1
            response.status = message["status"]
            response.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    response.body = b"".join(chunks)
    return response, starts
