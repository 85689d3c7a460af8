"""A worker's spans: for each request of a batch that the gateway sampled, a `queue` span and a
`compute` span under the gateway's span, recorded once the replies are out; nothing for the
others. The consumer of one version runs here in-process on a real session and real Redis;
tests/integration/test_tracing.py runs a whole worker process."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import redis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from controlplane.redis_client import redis_keys
from dataplane.wire import decode_reply, encode_request
from observability import tracing
from registry.demo_models import build_mlp
from registry.signature import extract_signature
from workers.consumer import ServedVersion, VersionConsumer
from workers.runtime import load_session

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_SPAN = "00f067aa0ba902b7"
Traced = Callable[..., InMemorySpanExporter]


def consumer(tmp_path: Path, client: redis.Redis) -> VersionConsumer:
    artifact = tmp_path / "mlp.onnx"
    artifact.write_bytes(build_mlp(4, [8], 2))
    signature = dict(extract_signature(ort.InferenceSession(str(artifact))))
    version = ServedVersion(7, "fraud", 3, signature, str(artifact), 8, 0.0, (), "cpu", False)
    loaded = load_session(version.id, str(artifact), signature, "cpu", 1)
    return VersionConsumer(version, client, redis_keys(), "w1", lambda v: loaded, 1000)


def entry(request_id: str, reply_to: str, enqueued_ms: float, traceparent: str | None) -> dict[bytes, bytes]:
    row = np.arange(4, dtype=np.float32).reshape(1, 4).tobytes()
    deadline = int(time.time() * 1000) + 10_000
    return encode_request(
        request_id, reply_to, deadline, enqueued_ms, [("input", "FP32", [1, 4], row)], None, traceparent
    )


def test_only_sampled_requests_get_worker_spans_under_the_gateway_span(
    tmp_path: Path, redis_client: redis.Redis, traced: Traced
) -> None:
    exporter = traced(1.0, tracing.WORKER_SERVICE)  # the ratio does not matter: the gateway decided
    reply_to = redis_keys().reply_list("tracing-test")
    enqueued = time.time() * 1000 - 5
    entries = [
        ("s", b"1-0", entry("sampled", reply_to, enqueued, f"00-{TRACE}-{GATEWAY_SPAN}-01")),
        ("s", b"2-0", entry("plain", reply_to, enqueued, None)),
        ("s", b"3-0", entry("garbled", reply_to, enqueued, "00-not-a-trace")),
    ]

    consumer(tmp_path, redis_client).process(entries)

    replies = [decode_reply(blob) for blob in redis_client.lrange(reply_to, 0, -1)]
    assert [(r.request_id, r.status, r.batch_size) for r in replies] == [
        ("sampled", 200, 3),
        ("plain", 200, 3),
        ("garbled", 200, 3),
    ]
    queue, compute = exporter.get_finished_spans()
    assert (queue.name, queue.kind, compute.name) == ("queue", SpanKind.CONSUMER, "compute")
    for span in (queue, compute):
        assert span.parent is not None
        assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (TRACE, GATEWAY_SPAN)
        assert span.status.status_code == StatusCode.UNSET
        assert dict(span.attributes or {}) == {
            "turnout.model": "fraud",
            "turnout.version": "3",
            "turnout.worker": "w1",
            "turnout.batch_size": 3,
            "turnout.status": 200,
        }
    # The queue runs from the gateway's enqueue to the batch's start, the compute right after it.
    assert queue.start_time == round(enqueued * 1000) * 1000
    assert queue.end_time == compute.start_time
    compute_ms = (compute.end_time - compute.start_time) / 1e6  # type: ignore[operator]
    assert compute_ms == pytest.approx(replies[0].compute_ms, abs=0.002)  # the reply rounds to the µs


def test_a_worker_with_tracing_off_records_nothing_whatever_the_gateway_sent(
    tmp_path: Path, redis_client: redis.Redis, traced: Traced
) -> None:
    exporter = traced(1.0, tracing.WORKER_SERVICE)
    tracing.shutdown()
    reply_to = redis_keys().reply_list("tracing-test")

    consumer(tmp_path, redis_client).process(
        [("s", b"1-0", entry("sampled", reply_to, time.time() * 1000, f"00-{TRACE}-{GATEWAY_SPAN}-01"))]
    )

    assert decode_reply(redis_client.lpop(reply_to)).status == 200  # type: ignore[arg-type]
    assert exporter.get_finished_spans() == ()
