"""gRPC load for `make bench` from h2load (nghttp2's load generator, in C: Debian's
nghttp2-client), as wrk is for HTTP: the Python generator it replaced (grpc.aio) spent a third
of a core of the two the server shares, which starved the server it measured.

A gRPC call is an HTTP/2 POST of one length-prefixed message to /package.Service/Method with
`content-type: application/grpc` and `te: trailers`; h2load sends the same prepared frame on
every stream, as wrk sends one prepared body. h2load knows nothing of gRPC, so a call that
failed (a status in the trailers, no message) still counts as a 200: each cell checks that the
answers carried as many bytes as that many successful replies would, and
`ResponseSize.of` measures one successful reply first, with the real client.
"""

from __future__ import annotations

import re
import shutil
import statistics
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.grpc_generated import grpc_predict_v2_pb2 as pb

INFER = "/inference.GRPCInferenceService/ModelInfer"
LIVE = "/inference.GRPCInferenceService/ServerLive"
# Streams per connection at concurrency 64: 8 connections of 8 streams (a client's few
# channels, each multiplexing calls); the server's processes share connections, not calls.
STREAMS_PER_CONNECTION = 8


class H2LoadError(RuntimeError):
    pass


@dataclass
class H2Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests: int


def framed(message: bytes) -> bytes:
    """One gRPC message on the wire: uncompressed flag, 4-byte big-endian length, the message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def infer_request(model: str, input_dim: int, seed: int = 7) -> bytes:
    """A batch-1 ModelInferRequest with its input in raw_input_contents, as tritonclient.grpc sends it."""
    row = np.random.default_rng(seed).standard_normal((1, input_dim)).astype(np.float32)
    message = pb.ModelInferRequest(model_name=model, raw_input_contents=[row.tobytes()])
    message.inputs.add(name="input", datatype="FP32", shape=[1, input_dim])
    return message.SerializeToString()


def reply_bytes(target: str, method: str, request: bytes, key: str) -> int:
    """The framed size of one successful answer, from the grpc client (which checks the status)."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        answer = call(request, metadata=(("authorization", f"Bearer {key}"),), timeout=30)
    return len(framed(answer))


def run(
    target: str,
    method: str,
    request: bytes,
    concurrency: int,
    seconds: float,
    key: str,
    reply_size: int,
    warmup: float = 1.0,
) -> H2Figures:
    """A closed loop of `concurrency` streams for `seconds` (after `warmup`)."""
    h2load = shutil.which("h2load")
    if h2load is None:
        raise H2LoadError("h2load is not installed: apt-get install nghttp2-client (make bench does)")
    connections = max(1, concurrency // STREAMS_PER_CONNECTION)
    streams = max(1, concurrency // connections)
    with tempfile.TemporaryDirectory(prefix="turnout-h2load-") as scratch:
        body, log = Path(scratch) / "body", Path(scratch) / "requests.log"
        body.write_bytes(framed(request))
        args = [h2load, "-D", str(max(1, round(seconds))), "--warm-up-time", f"{max(0, round(warmup * 1000))}ms"]
        args += ["-c", str(connections), "-m", str(streams), "-d", str(body), "--log-file", str(log)]
        args += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        args += ["-H", f"authorization: Bearer {key}", f"http://{target}{method}"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + warmup + 60, check=False)  # noqa: S603
        if done.returncode != 0:
            raise H2LoadError(f"h2load failed ({done.returncode}): {done.stderr or done.stdout}")
        durations = [int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.count("\t") >= 2]
    return figures(done.stdout, durations, reply_size)


def figures(output: str, durations_us: list[int], reply_size: int) -> H2Figures:
    """The figures of one h2load run: its rate and counts, the latencies from its request log."""
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", output)
    counts = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", output)
    data = re.search(r"^traffic: .*\((\d+)\) data", output, re.MULTILINE)
    if rate is None or counts is None or data is None or not durations_us:
        raise H2LoadError(f"cannot read h2load's output:\n{output}")
    done, succeeded, failed = (int(g) for g in counts.groups())
    if failed or succeeded != done:
        raise H2LoadError(f"h2load saw {failed} failed streams of {done}:\n{output}")
    received = int(data.group(1))
    # Errors come as trailers only: no message, so fewer bytes than `done` successful replies.
    answered = received / reply_size
    if answered < 0.99 * done:
        raise H2LoadError(
            f"only about {answered:.0f} of {done} calls answered with a message ({received} bytes of data at "
            f"{reply_size} a reply): the others failed (see the server's log)"
        )
    ordered = sorted(durations_us)
    return H2Figures(
        rps=float(rate.group(1)),
        p50_ms=ordered[len(ordered) // 2] / 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1000,
        mean_ms=statistics.fmean(ordered) / 1000,
        requests=done,
    )
