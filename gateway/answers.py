"""What an inference answer carries besides its body, and what is recorded of it: the
`Server-Timing` header, the kind of failure an error is (for the fallback chain), and the
access log line. Used by gateway/model_endpoints.py."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from dataplane.wire import WireReply
from gateway.http import Scope
from gateway.protocol import ParsedRequest
from observability.recorder import Observation

access_logger = logging.getLogger("turnout.access")

CACHE_HEADER = b"x-turnout-cache"


@dataclass
class Served:
    """What an inference produced, for the response (each transport encodes it) and for what runs after it."""

    request: ParsedRequest
    reply: WireReply
    model_name: str
    outputs: list[tuple[str, str, np.ndarray]]  # (name, datatype, array), before the request's selection
    parameters: dict[str, Any]  # the response's parameters: arm, cache, fallback
    timeout_s: float
    version: int  # the version whose outputs these are (a fallback's, when one answered)
    status: int = 200


def failure_of_reply(reply: WireReply) -> str:
    """What kind of failure a worker's error answer is, for the fallback chain (gateway/fallbacks.py)."""
    if reply.status == 504:
        return "timeout"  # the deadline passed in the queue, or a pipeline's stage ran out of time
    if reply.status == 503 and "memory" in reply.error:
        return "overload"  # the worker's inference memory was held by other runs (workers/consumer.py)
    return "model_error"  # the model could not run the input, the version could not load, the worker failed


def server_timing(obs: Observation) -> str:
    # A pipeline's stages (registry/pipelines.py keeps their names tokens) come between
    # compute, which is their sum, and total.
    stages = "".join(f', {name};dur={ms:.3f};desc="stage"' for name, ms in obs.stages or ())
    return (
        f"validate;dur={obs.validation_ms:.3f}, queue;dur={obs.queue_ms:.3f}, "
        f"compute;dur={obs.compute_ms:.3f}{stages}, total;dur={obs.total_ms:.3f}"
    )


@functools.lru_cache(maxsize=1)
def _utc_second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds; the seconds part is formatted once per second."""
    whole = int(now)
    return f"{_utc_second(whole)}.{int((now - whole) * 1000):03d}Z"


def access_log(scope: Scope, request_id: str, obs: Observation) -> None:
    """One JSON line per inference; never the tensors. Serialised here with orjson
    (the handler only writes it): python-json-logger would cost several times more
    on every request."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    line = {
        "time": _timestamp(time.time()),
        "level": "INFO",
        "logger": "turnout.access",
        "message": f"{scope['method']} {scope['path']} {obs.code}",
        "request_id": request_id,
        "client": client[0] if client else None,
        "model": obs.model,
        "version": obs.version,
        "arm": obs.arm,
        "status": obs.code,
        "batch_size": obs.batch_size,
        "validation_ms": round(obs.validation_ms, 3),
        "queue_ms": round(obs.queue_ms, 3),
        "compute_ms": round(obs.compute_ms, 3),
        "total_ms": round(obs.total_ms, 3),
    }
    if obs.fallback:
        line["fallback"], line["fallback_reason"] = obs.fallback, obs.fallback_reason
    if obs.cache:
        line["cache"] = obs.cache
    if obs.stages:
        line["stages_ms"] = {name: round(ms, 3) for name, ms in obs.stages}
    access_logger.info(orjson.dumps(line).decode())
