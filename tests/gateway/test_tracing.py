"""Tracing in the gateway: one server span per inference, the child of the client's
`traceparent`, with a span per stage; error answers traced with their status; the trace id
in the response; and the sampled request's span carried on the stream to the worker.
No worker runs here: tests/integration/test_tracing.py follows a request through one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from dataplane.wire import WireRequest, decode_request
from registry.models import ModelVersion
from tests.support.asgi import AsgiClient
from tests.support.v2 import Gateway

# The gateway reads models on its own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SAMPLED = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
Traced = Callable[..., InMemorySpanExporter]


def one_row(timeout_us: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    if timeout_us is not None:
        body["parameters"] = {"timeout": timeout_us}
    return body


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def server_span(spans: dict[str, ReadableSpan]) -> ReadableSpan:
    [server] = [span for span in spans.values() if span.kind == SpanKind.SERVER]
    return server


def children(spans: dict[str, ReadableSpan], parent: ReadableSpan) -> list[str]:
    return sorted(name for name, span in spans.items() if span.parent and span.parent.span_id == parent.context.span_id)


def test_while_tracing_is_off_no_trace_id_is_answered(gateway: Gateway, ready_model: str) -> None:
    response = gateway.infer(ready_model, {"inputs": []}, headers=SAMPLED)

    assert response.status == 400
    assert "x-turnout-trace-id" not in response.headers


def test_an_unknown_model_is_traced_as_a_404_under_the_clients_trace(gateway: Gateway, traced: Traced) -> None:
    exporter = traced(0.0)  # the client's sampled flag decides, not the ratio

    response = gateway.infer("nope", one_row(), headers=SAMPLED)

    assert response.status == 404
    assert response.headers["x-turnout-trace-id"] == CLIENT_TRACE
    spans = by_name(exporter)
    server = server_span(spans)
    assert server.name == "POST /v2/models/{name}/infer"
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert (server.status.status_code, server.status.description) == (StatusCode.ERROR, "unknown model 'nope'")
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 404
    assert server.attributes["turnout.model"] == "nope"
    assert server.attributes["turnout.request_id"] == response.headers["x-request-id"]


def test_a_missing_key_is_traced_in_the_authenticate_span(
    keyed_gateway_client: AsgiClient, ready_model: str, traced: Traced
) -> None:
    exporter = traced(1.0)

    response = keyed_gateway_client.post(f"/v2/models/{ready_model}/infer", b"{}", headers=SAMPLED)

    assert response.status == 401
    spans = by_name(exporter)
    server = server_span(spans)
    assert children(spans, server) == ["authenticate"]
    assert spans["authenticate"].status.status_code == StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 401


def test_bad_input_is_traced_in_the_validate_span_and_goes_no_further(
    gateway: Gateway, ready_model: str, traced: Traced
) -> None:
    exporter = traced(1.0)
    wrong_shape = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}

    response = gateway.infer(ready_model, wrong_shape)

    assert response.status == 400
    spans = by_name(exporter)
    server = server_span(spans)
    assert server.parent is None  # no traceparent: a trace of its own
    assert response.headers["x-turnout-trace-id"] == f"{server.context.trace_id:032x}"
    assert children(spans, server) == ["validate"]
    assert spans["validate"].status.status_code == StatusCode.ERROR
    assert spans["validate"].status.description == response.json()["error"]
    assert server.attributes is not None
    assert (server.attributes["turnout.version"], server.attributes["turnout.arm"]) == ("1", "champion")


class StreamWatch:
    """The requests that appear on a version's stream while a request is pending: nobody
    drains it here, and the gateway deletes an entry when its request times out."""

    def __init__(self, client: redis.Redis, model: str) -> None:
        self.client = client
        self.stream = redis_keys().request_stream(ModelVersion.objects.get(model__name=model, number=1).id, NORMAL)
        self.seen: dict[bytes, WireRequest] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + 5
        while not self._stop.is_set() and time.monotonic() < deadline:
            for entry_id, fields in self.client.xrange(self.stream):
                self.seen[entry_id] = decode_request(entry_id, fields)
            time.sleep(0.005)

    def stop(self) -> list[WireRequest]:
        self._stop.set()
        self._thread.join()
        return list(self.seen.values())


def test_a_sampled_request_carries_its_span_to_the_stream_and_an_unanswered_one_ends_in_wait(
    gateway: Gateway, ready_model: str, traced: Traced, redis_client: redis.Redis
) -> None:
    exporter = traced(0.0)
    watch = StreamWatch(redis_client, ready_model)

    response = gateway.infer(ready_model, one_row(timeout_us=300_000), headers=SAMPLED)
    [request] = watch.stop()

    assert response.status == 504  # no worker serves it
    assert response.headers["x-turnout-trace-id"] == CLIENT_TRACE
    spans = by_name(exporter)
    server = server_span(spans)
    assert children(spans, server) == ["enqueue", "validate", "wait"]
    assert spans["enqueue"].status.status_code == StatusCode.UNSET
    assert spans["wait"].status.status_code == StatusCode.ERROR
    assert spans["validate"].end_time <= spans["enqueue"].start_time  # type: ignore[operator]
    assert spans["enqueue"].end_time <= spans["wait"].start_time  # type: ignore[operator]
    assert request.traceparent == f"00-{CLIENT_TRACE}-{server.context.span_id:016x}-01"


def test_an_unsampled_request_names_its_trace_but_sends_the_worker_nothing(
    gateway: Gateway, ready_model: str, traced: Traced, redis_client: redis.Redis
) -> None:
    exporter = traced(0.0)
    watch = StreamWatch(redis_client, ready_model)

    response = gateway.infer(ready_model, one_row(timeout_us=100_000))
    [request] = watch.stop()

    assert response.status == 504
    trace_id = response.headers["x-turnout-trace-id"]
    assert len(trace_id) == 32
    assert int(trace_id, 16) != 0
    assert exporter.get_finished_spans() == ()
    assert request.traceparent is None
