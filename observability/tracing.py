"""OpenTelemetry tracing of the inference path, off unless configured. No Django imports:
workers/consumer.py imports this, and the settings are passed in (`configure`).

One trace per inference request. The gateway opens a server span, the child of the
client's W3C `traceparent` when it sends a valid one, with a child span for each of
its stages (authenticate, validate, enqueue, wait). A sampled request carries its
server span's `traceparent` through the Redis stream (dataplane/wire.py); the worker
records, once the request is answered, a `queue` span and one span per stage it ran,
with the times it measured, under that server span.

While tracing is off every helper returns at its first line, so the inference path
pays one flag check per call. While it is on, a request that is not sampled costs one
span start (the sampler's decision, which also gives it the trace id the response
names), and nothing else: no stage spans, nothing on the wire, nothing in the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

logger = logging.getLogger(__name__)

GATEWAY_SERVICE = "turnout-gateway"
WORKER_SERVICE = "turnout-worker"
TRACE_ID_HEADER = b"x-turnout-trace-id"

_PROPAGATOR = TraceContextTextMapPropagator()
_ROOT = Context()  # no parent: a request without a (valid) traceparent starts a trace

# Module state rather than OpenTelemetry's global provider: that one can be set only once
# per process, and tests configure tracing on and off again.
_enabled = False
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()


def configure(
    service_name: str, enabled: bool, ratio: float, endpoint: str, exporter: SpanExporter | None = None
) -> None:
    """Tracing for this process, replacing any earlier configuration.

    Sampled: a request whose client sent a `traceparent` as the client decided, any
    other with probability `ratio`. Spans go in batches to the OTLP/HTTP `endpoint`
    (the full traces URL), or to `exporter` as each one ends (tests)."""
    global _enabled, _provider, _tracer
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"the sample ratio must be between 0 and 1, not {ratio}")
    previous = _provider
    _enabled, _provider, _tracer = False, None, trace.NoOpTracer()
    if previous is not None:
        previous.shutdown()  # exports what it still holds
    if not enabled:
        return
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(ratio)), resource=Resource.create({SERVICE_NAME: service_name})
    )
    if exporter is None:
        # Only a process that traces pays for importing the exporter (requests and protobuf: ~80 ms).
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("turnout")
    _enabled = True
    logger.info(
        "tracing on: %s, sampling %g of new traces, exporting to %s",
        service_name,
        ratio,
        endpoint if exporter is None else type(exporter).__name__,
    )


def shutdown() -> None:
    """Export the spans still held and stop tracing (a process that stops)."""
    configure("", enabled=False, ratio=0.0, endpoint="")


def enabled() -> bool:
    return _enabled


def parent_context(traceparent: str | None, tracestate: str | None = None) -> Context:
    """The context a W3C `traceparent` names; the empty (root) context when it is missing or malformed."""
    if not traceparent:
        return _ROOT
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier, _ROOT)


# --- the gateway ----------------------------------------------------------------------------------------------------
class _NoStage:
    """What `stage` gives while nothing is recorded: one shared object, no allocation."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_STAGE = _NoStage()


class _Stage:
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
        self._span.end()


class RequestTrace:
    """The gateway's server span of one request, and its stages. Only a sampled request's
    span records anything; an unsampled one still has a trace id for the response."""

    __slots__ = ("_context", "sampled", "span", "trace_id")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.sampled = span.is_recording()
        self.trace_id = span.get_span_context().trace_id.to_bytes(16, "big").hex()  # 3x format(..., "032x")
        self._context = trace.set_span_in_context(span, _ROOT) if self.sampled else _ROOT

    def traceparent(self) -> str | None:
        """What the worker parents its spans to; None when the request is not sampled."""
        if not self.sampled:
            return None
        context = self.span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"

    def stage(self, name: str) -> _Stage | _NoStage:
        if not self.sampled:
            return _NO_STAGE
        return _Stage(_tracer.start_span(name, context=self._context))

    def finish(self, status: int, error: str, version: int | None, arm: str) -> None:
        """End the span with the answer's status (an error's message with it) and what served it."""
        if not self.sampled:
            return  # nothing was recorded, nothing to end
        span = self.span
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("turnout.arm", arm)
        if version is not None:
            span.set_attribute("turnout.version", str(version))
        if status >= 400:
            span.set_status(Status(StatusCode.ERROR, error or str(status)))
        span.end()


_ROUTES = {False: "/v2/models/{name}/infer", True: "/v2/models/{name}/versions/{version}/infer"}
_SPAN_NAMES = {pinned: f"POST {route}" for pinned, route in _ROUTES.items()}


def start_request(
    model: str, pinned: bool, request_id: str, headers: Iterable[tuple[bytes, bytes]]
) -> RequestTrace | None:
    """The server span of `POST /v2/models/{name}[/versions/{version}]/infer` (a version in the path:
    `pinned`), the child of the `traceparent` in the request's (ASGI) `headers` when it is valid;
    None while tracing is off."""
    if not _enabled:
        return None
    traceparent = tracestate = None
    for key, value in headers:
        if key == b"traceparent":
            traceparent = value.decode("latin-1")
        elif key == b"tracestate":
            tracestate = value.decode("latin-1")
    parent = parent_context(traceparent, tracestate) if traceparent else _ROOT
    request = RequestTrace(_tracer.start_span(_SPAN_NAMES[pinned], context=parent, kind=SpanKind.SERVER))
    if request.sampled:  # the attributes after the sampler's decision: most requests need none
        request.span.set_attributes(
            {
                "http.request.method": "POST",
                "http.route": _ROUTES[pinned],
                "turnout.model": model,
                "turnout.request_id": request_id,
            }
        )
    return request


def stage(request: RequestTrace | None, name: str) -> _Stage | _NoStage:
    """`with stage(call.trace, "validate"):` a child span of the request's, when it is sampled."""
    if request is None or not request.sampled:
        return _NO_STAGE
    return request.stage(name)


def traceparent(request: RequestTrace | None) -> str | None:
    """What goes to the worker with the request: its server span, when it is sampled."""
    if request is None:
        return None
    return request.traceparent()


# --- the worker -----------------------------------------------------------------------------------------------------
def _ns(ms: float) -> int:
    # Whole microseconds, as the gateway writes the enqueue time: ms * 1e6 in floating point
    # is off by a few hundred nanoseconds at today's epoch.
    return round(ms * 1000) * 1000


def record_worker_spans(
    traceparent: str,
    enqueued_ms: float,
    started_ms: float,
    stages: Sequence[tuple[str, float]],
    attributes: Mapping[str, AttributeValue],
    status: int = 200,
    error: str = "",
) -> None:
    """A request's time in the worker, recorded after the fact under the gateway span its
    `traceparent` names: `queue` from its enqueue to its batch's start (wall clock, ms), then
    one span per stage ((name, duration in ms), run back to back from the batch's start).
    Each carries `attributes` and the reply's `status`; a failed request's last stage, the error."""
    if not _enabled:
        return
    parent = parent_context(traceparent)
    if parent is _ROOT:
        return  # not a traceparent the gateway wrote: nothing to attach the spans to
    attributes = {**attributes, "turnout.status": status}
    queue = _tracer.start_span(
        "queue", context=parent, kind=SpanKind.CONSUMER, attributes=attributes, start_time=_ns(enqueued_ms)
    )
    queue.end(end_time=_ns(max(enqueued_ms, started_ms)))
    at = started_ms
    for index, (name, duration_ms) in enumerate(stages):
        span = _tracer.start_span(name, context=parent, attributes=attributes, start_time=_ns(at))
        at += max(0.0, duration_ms)
        if status >= 400 and index == len(stages) - 1:
            span.set_status(Status(StatusCode.ERROR, error or str(status)))
        span.end(end_time=_ns(at))
