"""The tracing helpers of observability/tracing.py: a client's traceparent honoured or, when
malformed, ignored; sampling; worker spans recorded after the fact with the times measured;
and nothing at all while tracing is off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from observability import tracing

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SAMPLED = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01".encode()
NOT_SAMPLED = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00".encode()
Traced = Callable[..., InMemorySpanExporter]


def request_spans(traceparent: bytes | None, status: int = 200, tracestate: bytes = b"") -> tracing.RequestTrace:
    headers = [(b"content-type", b"application/json")]
    if traceparent is not None:
        headers.append((b"traceparent", traceparent))
    if tracestate:
        headers.append((b"tracestate", tracestate))
    trace = tracing.start_request("fraud", False, "req-1", headers)
    assert trace is not None
    with tracing.stage(trace, "validate"):
        pass
    trace.finish(status, "" if status == 200 else "it went wrong", 3, "champion")
    return trace


@pytest.mark.parametrize(
    "malformed",
    [
        b"garbage",
        b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # an all-zero trace id
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-" + b"0" * 16 + b"-01",  # an all-zero parent id
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a forbidden version
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has four fields
    ],
)
def test_a_malformed_traceparent_is_ignored_and_the_request_starts_a_trace_of_its_own(
    traced: Traced, malformed: bytes
) -> None:
    exporter = traced(1.0)

    trace = request_spans(malformed)

    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert server.parent is None
    assert trace.trace_id != CLIENT_TRACE
    assert trace.trace_id == f"{server.context.trace_id:032x}"


def test_a_client_that_did_not_sample_its_trace_is_honoured_whatever_the_ratio(traced: Traced) -> None:
    exporter = traced(1.0)

    trace = request_spans(NOT_SAMPLED)

    assert exporter.get_finished_spans() == ()
    assert trace.trace_id == CLIENT_TRACE  # still the client's trace, for the response header
    assert trace.traceparent() is None  # nothing for the worker to record


def test_a_client_that_sampled_its_trace_is_honoured_whatever_the_ratio(traced: Traced) -> None:
    exporter = traced(0.0)

    trace = request_spans(SAMPLED, tracestate=b"vendor=abc")

    validate, server = exporter.get_finished_spans()
    assert server.name == "POST /v2/models/{name}/infer"
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None
    assert (f"{server.parent.span_id:016x}", f"{server.context.trace_id:032x}") == (CLIENT_SPAN, CLIENT_TRACE)
    assert server.context.trace_state.to_header() == "vendor=abc"  # the client's vendor state goes on
    assert validate.parent is not None
    assert validate.parent.span_id == server.context.span_id
    assert trace.traceparent() == f"00-{CLIENT_TRACE}-{server.context.span_id:016x}-01"


def test_without_a_traceparent_the_ratio_decides(traced: Traced) -> None:
    never = traced(0.0)
    unsampled = [request_spans(None) for _ in range(20)]
    assert never.get_finished_spans() == ()
    assert all(len(t.trace_id) == 32 and t.traceparent() is None for t in unsampled)
    assert len({t.trace_id for t in unsampled}) == 20  # each request its own trace

    always = traced(1.0)
    sampled = request_spans(None)
    assert [s.name for s in always.get_finished_spans()] == ["validate", "POST /v2/models/{name}/infer"]
    assert sampled.traceparent() is not None


def test_an_error_answer_sets_the_status_and_a_failing_stage_is_marked(traced: Traced) -> None:
    exporter = traced(1.0)
    trace = tracing.start_request("fraud", True, "req-2", [])
    assert trace is not None

    with pytest.raises(TimeoutError), tracing.stage(trace, "wait"):
        raise TimeoutError("no reply within 50 ms")
    trace.finish(504, "no reply within 50 ms", 2, "pinned")

    wait, server = exporter.get_finished_spans()
    assert (wait.status.status_code, wait.status.description) == (StatusCode.ERROR, "no reply within 50 ms")
    assert (server.status.status_code, server.status.description) == (StatusCode.ERROR, "no reply within 50 ms")
    assert server.name == "POST /v2/models/{name}/versions/{version}/infer"
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/v2/models/{name}/versions/{version}/infer",
        "http.response.status_code": 504,
        "turnout.model": "fraud",
        "turnout.version": "2",
        "turnout.arm": "pinned",
        "turnout.request_id": "req-2",
    }


def test_worker_spans_take_the_times_measured_and_hang_under_the_gateway_span(traced: Traced) -> None:
    exporter = traced(0.0, tracing.WORKER_SERVICE)
    gateway_span = "1111111111111111"
    attributes = {"turnout.model": "fraud", "turnout.worker": "w1", "turnout.batch_size": 8}
    enqueued, started = 1_700_000_000_000.250, 1_700_000_000_003.750

    tracing.record_worker_spans(
        f"00-{CLIENT_TRACE}-{gateway_span}-01", enqueued, started, [("decode", 1.5), ("compute", 2.0)], attributes
    )

    queue, decode, compute = exporter.get_finished_spans()
    assert [s.name for s in (queue, decode, compute)] == ["queue", "decode", "compute"]
    assert queue.kind == SpanKind.CONSUMER
    assert (queue.start_time, queue.end_time) == (1_700_000_000_000_250_000, 1_700_000_000_003_750_000)
    assert (decode.start_time, decode.end_time) == (1_700_000_000_003_750_000, 1_700_000_000_005_250_000)
    assert (compute.start_time, compute.end_time) == (1_700_000_000_005_250_000, 1_700_000_000_007_250_000)
    for span in (queue, decode, compute):
        assert span.parent is not None
        assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (CLIENT_TRACE, gateway_span)
        assert dict(span.attributes or {}) == {**attributes, "turnout.status": 200}
        assert span.status.status_code == StatusCode.UNSET
        assert span.resource.attributes["service.name"] == "turnout-worker"


def test_a_failed_request_marks_its_last_worker_stage(traced: Traced) -> None:
    exporter = traced(1.0, tracing.WORKER_SERVICE)

    tracing.record_worker_spans(
        SAMPLED.decode(), 10.0, 12.0, [("compute", 0.0)], {}, 400, "the model could not run on this input"
    )

    queue, compute = exporter.get_finished_spans()
    assert queue.status.status_code == StatusCode.UNSET
    assert (compute.status.status_code, compute.status.description) == (
        StatusCode.ERROR,
        "the model could not run on this input",
    )
    assert compute.attributes is not None
    assert compute.attributes["turnout.status"] == 400


def test_worker_spans_need_a_valid_traceparent(traced: Traced) -> None:
    exporter = traced(1.0, tracing.WORKER_SERVICE)

    tracing.record_worker_spans("00-nonsense", 10.0, 12.0, [("compute", 1.0)], {})

    assert exporter.get_finished_spans() == ()


def test_while_tracing_is_off_nothing_is_recorded(traced: Traced) -> None:
    exporter = traced(1.0)
    tracing.configure(tracing.GATEWAY_SERVICE, enabled=False, ratio=1.0, endpoint="")

    assert not tracing.enabled()
    assert tracing.start_request("fraud", False, "req-3", [(b"traceparent", SAMPLED)]) is None
    with tracing.stage(None, "validate"):
        pass
    assert tracing.traceparent(None) is None
    tracing.record_worker_spans(SAMPLED.decode(), 10.0, 12.0, [("compute", 1.0)], {})
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_a_sample_ratio_outside_0_to_1_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        tracing.configure(tracing.GATEWAY_SERVICE, enabled=True, ratio=ratio, endpoint="")
    assert not tracing.enabled()
