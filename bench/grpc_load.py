"""A closed-loop gRPC load generator for `make bench`: `concurrency` callers, on one grpc.aio channel
(a TCP connection of its own) per 16 callers, each sending batch-1 ModelInfer requests (the input
in raw_input_contents, as tritonclient.grpc sends it) back to back for `seconds`. Run as its own
process (as wrk is), so its CPU is not the server's:

    python bench/grpc_load.py HOST:PORT MODEL INPUT_DIM CONCURRENCY SECONDS API_KEY

prints one JSON line: rps, p50_ms, p99_ms, mean_ms, requests, errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import uvloop  # noqa: E402

from gateway.grpc_generated import grpc_predict_v2_pb2 as pb  # noqa: E402

CALLERS_PER_CHANNEL = 16
METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def run(target: str, model: str, input_dim: int, concurrency: int, seconds: float, key: str) -> dict[str, float]:
    row = np.random.default_rng(7).standard_normal((1, input_dim)).astype(np.float32)
    message = pb.ModelInferRequest(model_name=model, raw_input_contents=[row.tobytes()])
    message.inputs.add(name="input", datatype="FP32", shape=[1, input_dim])
    # Serialised once and answers left as bytes, as wrk sends one prepared body and parses nothing:
    # the client's own cost per call stays small beside the server's (it shares the machine).
    request = message.SerializeToString()
    metadata = (("authorization", f"Bearer {key}"),)
    # A subchannel pool of each channel's own: grpc otherwise shares one TCP connection between channels to
    # the same target, and one connection is served by one of the server's processes (SO_REUSEPORT
    # spreads connections, not calls).
    options = [("grpc.use_local_subchannel_pool", 1)]
    count = -(-concurrency // CALLERS_PER_CHANNEL)
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(count)]
    stubs = [channel.unary_unary(METHOD) for channel in channels]
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def caller(stub: Any) -> None:
        nonlocal errors
        while True:
            started = time.perf_counter()
            if started >= end:
                return
            try:
                await stub(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(caller(stubs[i // CALLERS_PER_CHANNEL]) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    ordered = sorted(latencies) or [0.0]

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
        "mean_ms": sum(ordered) / len(ordered) * 1000,
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> None:
    target, model, input_dim, concurrency, seconds, key = sys.argv[1:7]
    result = uvloop.run(run(target, model, int(input_dim), int(concurrency), float(seconds), key))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
