"""One trace per request across processes: the in-process gateway keeps its spans in memory,
a real worker process exports its spans over OTLP/HTTP to a receiver in this process, and
both sides' spans of a request share the trace id of the client's `traceparent`, the
worker's hanging under the gateway's server span. Both sides sample no new traces
(ratio 0): the client's sampled flag alone decides."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from registry.demo_models import build_mlp
from tests.support.otlp import OtlpReceiver
from tests.support.processes import wait_for
from tests.support.serving import Registry, Workers, start_workers
from tests.support.v2 import Gateway

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
ONE_ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.5, -1, 2, 0]}]}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    yield otlp
    otlp.close()


@pytest.fixture(scope="module")
def traced_worker(
    django_db_setup: Any, artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[Workers]:
    workers = start_workers(
        ["traced"],
        tmp_path_factory.mktemp("logs"),
        artifact_dir,
        TURNOUT_TRACING="true",
        TURNOUT_TRACING_SAMPLE_RATIO="0",
        TURNOUT_TRACING_ENDPOINT=receiver.url,
        # The SDK's own variable: export every 0.1 s rather than every 5 s, so the test need not wait.
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    yield workers
    workers.stop()


def test_gateway_and_worker_spans_of_one_request_share_the_clients_trace(
    registry: Registry,
    traced_worker: Workers,
    gateway: Gateway,
    traced: Callable[..., InMemorySpanExporter],
    receiver: OtlpReceiver,
) -> None:
    exporter = traced(0.0)
    version = registry.add("inf-traced", build_mlp(4, [8], 2))
    gateway.wait_loaded("inf-traced", version.number, traced_worker)

    unsampled = gateway.infer("inf-traced", ONE_ROW)
    response = gateway.infer("inf-traced", ONE_ROW, headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})

    assert (unsampled.status, response.status) == (200, 200), (unsampled.body, response.body)
    assert response.headers["x-turnout-trace-id"] == CLIENT_TRACE
    arrived = wait_for(lambda: len(receiver.spans(CLIENT_TRACE)) >= 2, timeout=15)
    assert arrived, f"no worker spans arrived:\n{traced_worker.log()}"

    # The gateway: a server span under the client's span, its stages under it.
    gateway_spans = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(gateway_spans) == ["POST /v2/models/{name}/infer", "enqueue", "validate", "wait"]
    server = gateway_spans["POST /v2/models/{name}/infer"]
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert {f"{span.context.trace_id:032x}" for span in gateway_spans.values()} == {CLIENT_TRACE}
    server_id = f"{server.context.span_id:016x}"
    assert server.attributes is not None
    assert (server.attributes["turnout.model"], server.attributes["turnout.version"]) == ("inf-traced", "1")
    assert server.attributes["http.response.status_code"] == 200

    # The worker: queue and compute, under the gateway's server span, in the same trace.
    worker_spans = {span.name: span for span in receiver.spans(CLIENT_TRACE)}
    assert sorted(worker_spans) == ["compute", "queue"]
    for span in worker_spans.values():
        assert (span.service, span.trace_id, span.parent_span_id) == ("turnout-worker", CLIENT_TRACE, server_id)
        assert span.attributes["turnout.model"] == "inf-traced"
        assert span.attributes["turnout.version"] == "1"
        assert span.attributes["turnout.worker"].startswith("traced@")
        assert (span.attributes["turnout.batch_size"], span.attributes["turnout.status"]) == (1, 200)
        assert span.error is None
    # And in time: queued after the gateway enqueued it, computed before the gateway's wait ended.
    queue, compute = worker_spans["queue"], worker_spans["compute"]
    assert gateway_spans["enqueue"].start_time <= queue.start_ns <= queue.end_ns <= compute.start_ns  # type: ignore[operator]
    assert compute.end_ns <= gateway_spans["wait"].end_time  # type: ignore[operator]

    # The request without a traceparent was not sampled (ratio 0): a trace id, and no span anywhere.
    unsampled_trace = unsampled.headers["x-turnout-trace-id"]
    assert unsampled_trace != CLIENT_TRACE
    assert receiver.spans(unsampled_trace) == []
    assert len(receiver.spans()) == 2
