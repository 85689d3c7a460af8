"""Triton's extensions of the Open Inference Protocol that tools call: model statistics, the
model repository (index, load, unload) and model configuration, in Triton's JSON shapes; the
HTTP routes are gateway/triton_http.py's, the gRPC methods gateway/grpc_server.py's.

Keys: statistics, the index and configurations need `read` (the index and `stats` without a
model list only the models the key's patterns match); load and unload need `manage`, and the
key's owner must be allowed to maintain the model (as the management API's load/unload).

Statistics come from the figures Turnout keeps anyway (observability/counts.py, as the
dashboard reads them: the rollups in PostgreSQL and the current minutes in Redis, every web
process together), over the last 30 days rather than since a process started:
- inference_count, success.count: answers with status 200 (cache hits and fallback answers included);
- fail.count: every other answer; success.ns and fail.ns: the latency sketch's sum split between
  them in proportion (approximate: the sketch keeps buckets, about 1 % wide, not exact sums);
- execution_count: model runs, the sum over batch sizes of requests / size (exact when each
  request is one row); batch_stats: per batch size, those runs, with compute time the mean
  per request times the runs (approximate);
- queue and compute_infer: the summed queue waits and compute times of computed answers, exact;
  compute_input and compute_output: zero (onnxruntime's run is timed as one stage);
- last_inference: the start of the last minute with an answer, in ms since the epoch.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection

from accounts.services import KeyRecord
from gateway import routing
from gateway.model_endpoints import Call, ModelEndpoints
from gateway.protocol import ProtocolError
from observability import sketch
from observability.counts import Counts
from observability.queries import collect, window
from registry import services as registry_services
from registry.models import ModelVersion, RegisteredModel, VersionStatus
from registry.permissions import can_maintain

logger = logging.getLogger(__name__)

STATS_WINDOW = "30d"
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
DATA_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
}
# Registry states in Triton's words.
STATES: dict[str, str] = {
    VersionStatus.READY: "READY",
    VersionStatus.VALIDATING: "LOADING",
    VersionStatus.PENDING: "LOADING",
}


def duration(count: float, ns: float) -> dict[str, int]:
    return {"count": round(count), "ns": round(ns)}


def model_statistics(name: str, version: str, counts: Counts, last_minute: int) -> dict[str, Any]:
    """One entry of Triton's `model_stats` from Turnout's counts (see the module docstring)."""
    successes = counts.successes
    failures = max(0, counts.requests - successes)
    latency_ns = sum(sketch.bucket_value(index) * n for index, n in counts.latency.items()) * 1e6
    success_ns = latency_ns * successes / counts.requests if counts.requests else 0
    computed = counts.computed
    executions = {size: n / size for size, n in counts.batch_sizes.items() if size > 0}
    per_request_ns = counts.compute_us * 1000 / computed if computed else 0
    return {
        "name": name,
        "version": version,
        "last_inference": last_minute * 1000,
        "inference_count": successes,
        "execution_count": round(sum(executions.values())),
        "inference_stats": {
            "success": duration(successes, success_ns),
            "fail": duration(failures, latency_ns - success_ns),
            "queue": duration(computed, counts.queue_us * 1000),
            "compute_input": duration(0, 0),
            "compute_infer": duration(computed, counts.compute_us * 1000),
            "compute_output": duration(0, 0),
            "cache_hit": duration(counts.served.get("hit", 0), 0),
            "cache_miss": duration(counts.served.get("miss", 0), 0),
        },
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": duration(0, 0),
                "compute_infer": duration(round(runs), per_request_ns * counts.batch_sizes[size]),
                "compute_output": duration(0, 0),
            }
            for size, runs in sorted(executions.items())
        ],
    }


def _statistics(name: str | None, version: str | None) -> list[dict[str, Any]]:
    try:
        per_series = collect(window(STATS_WINDOW), model=name)
        per_version: dict[tuple[str, str], tuple[Counts, int]] = {}
        for (model, number, _arm), bins in per_series.items():
            if version is not None and number != version:
                continue
            total, last = per_version.get((model, number), (Counts(), 0))
            for start, counts in bins.items():
                total.add(counts)
                if counts.requests:
                    last = max(last, start)
            per_version[(model, number)] = (total, last)
        # Triton lists every version it serves, with zeros before its first request.
        ready = ModelVersion.objects.filter(status=VersionStatus.READY)
        if name is not None:
            ready = ready.filter(model__name=name)
        for model, ready_number in ready.values_list("model__name", "number"):
            if version is None or str(ready_number) == version:
                per_version.setdefault((model, str(ready_number)), (Counts(), 0))
    finally:
        connection.close()
    ordered = sorted(per_version.items(), key=lambda item: (item[0][0], int(item[0][1])))
    return [model_statistics(model, number, counts, last) for (model, number), (counts, last) in ordered]


def _index(ready_only: bool) -> list[dict[str, str]]:
    try:
        versions = ModelVersion.objects.select_related("model").order_by("model__name", "number")
        if ready_only:
            versions = versions.filter(status=VersionStatus.READY)
        return [
            {
                "name": v.model.name,
                "version": str(v.number),
                "state": STATES.get(v.status, "UNAVAILABLE"),
                "reason": "" if v.status == VersionStatus.READY else (v.status_reason or str(v.status)),
            }
            for v in versions.exclude(status=VersionStatus.ARCHIVED)
        ]
    finally:
        connection.close()


def _command(name: str, user_id: int, action: str) -> None:
    """Load or unload the version behind `name`'s production alias on every worker serving it."""
    try:
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        model = RegisteredModel.objects.filter(name=name).first()
        if model is None or user is None:
            raise ProtocolError(404, f"unknown model '{name}'")
        if not can_maintain(user, model):
            raise ProtocolError(403, f"you may not {action} model '{name}': only its maintainers may")
        version = ModelVersion.objects.filter(model=model, aliases__name="production").first()
        if version is None:
            raise ProtocolError(409, f"model '{name}' has no production version to {action}")
        command = registry_services.load_version if action == "load" else registry_services.unload_version
        try:
            command(version, actor=user)
        except registry_services.WorkersUnreachable as exc:
            raise ProtocolError(503, str(exc), [(b"retry-after", b"2")]) from None
        except registry_services.RegistryError as exc:
            raise ProtocolError(409, str(exc)) from None
    finally:
        connection.close()


class TritonExtensions:
    def __init__(self, models: ModelEndpoints) -> None:
        self.models = models
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnout-triton")

    async def _key(self, call: Call, name: str | None, needed: str) -> KeyRecord | None:
        if not self.models.require_key:
            return None
        return await self.models.authorize(call, name, needed)

    async def _in_thread(self, function: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        except DatabaseError as exc:
            raise ProtocolError(503, f"the model registry is unavailable: {exc}", [(b"retry-after", b"2")]) from None

    async def statistics(self, call: Call, name: str | None, version: str | None) -> dict[str, Any]:
        key = await self._key(call, name, "read")
        if name is not None:
            model = await self.models.model(name)
            if version is not None:
                routing.named_version(model, version)  # 404 for a version that does not exist
        stats = await self._in_thread(_statistics, name, version)
        if key is not None:
            stats = [entry for entry in stats if key.allows_model(entry["name"])]
        return {"model_stats": stats}

    async def index(self, call: Call, ready_only: bool) -> list[dict[str, str]]:
        key = await self._key(call, None, "read")
        models = await self._in_thread(_index, ready_only)
        return [m for m in models if key is None or key.allows_model(m["name"])]

    async def command(self, call: Call, name: str, action: str) -> None:
        key = await self._key(call, name, "manage")
        await self.models.model(name)
        if key is None:
            raise ProtocolError(403, f"{action} needs an API key with the 'manage' scope (keys are not required here)")
        await self._in_thread(_command, name, key.user_id, action)
        self.models.catalog.invalidate(name)

    async def config(self, call: Call, name: str, version: str | None) -> dict[str, Any]:
        await self._key(call, name, "read")
        model = await self.models.model(name)
        entry = routing.named_version(model, version)
        signature = routing.require_ready(model, entry)
        batched = bool(signature.get("batch_dim"))

        def tensors(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # Triton's dims leave the batch dimension out when max_batch_size > 0.
            return [
                {
                    "name": s["name"],
                    "data_type": DATA_TYPES.get(s["datatype"], "TYPE_INVALID"),
                    "dims": list(s["shape"][1:] if batched else s["shape"]),
                }
                for s in specs
            ]

        config: dict[str, Any] = {
            "name": model.name,
            "platform": PLATFORM,
            "backend": BACKEND,
            "max_batch_size": entry.max_batch_size if batched else 0,
            "input": tensors(signature["inputs"]),
            "output": tensors(signature["outputs"]),
        }
        if batched:
            config["dynamic_batching"] = {
                "preferred_batch_size": list(entry.preferred_batch_sizes),
                "max_queue_delay_microseconds": round(entry.max_queue_delay_ms * 1000),
                "priority_levels": 3,
                "default_priority_level": 2,
            }
        return config

    def close(self) -> None:
        self._executor.shutdown(wait=False)
