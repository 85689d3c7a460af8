"""Prometheus metrics. Names and labels are documented in docs/metrics.md.

Every process (web and worker) writes to the prometheus-client multiprocess
directory (PROMETHEUS_MULTIPROC_DIR, set by settings.py), and `/metrics`
aggregates the directory, so the figures are right with any number of web
processes and workers on a host.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# 0.1 ms to 30 s, roughly 2.5x apart.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

REQUESTS = Counter(
    "turnout_inference_requests",
    "Inference requests answered, by model, version, arm and HTTP status code.",
    ["model", "version", "arm", "code"],
)
STAGE_SECONDS = Histogram(
    "turnout_inference_stage_seconds",
    "Time spent per stage of an inference request (validation, queue, compute, total; a pipeline's stages by name).",
    ["model", "version", "arm", "stage"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "turnout_inference_batch_size",
    "Rows in the batch each answered request ran in.",
    ["model", "version"],
    buckets=BATCH_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "turnout_response_cache_lookups",
    "Look-ups of the response cache by versions that have one (cache_ttl_seconds > 0), by result: hit or miss.",
    ["model", "version", "result"],
)
FALLBACKS = Counter(
    "turnout_fallback_answers",
    "Requests a fallback answered, by the version that failed, the fallback (cache, version, human_review) "
    "and the failure that triggered it (timeout, model_error, overload).",
    ["model", "version", "fallback", "reason"],
)
REJECTED = Counter(
    "turnout_rejected_requests",
    "Requests refused before reaching a model, by reason.",
    ["reason"],
)
# Worker side.
BATCHES = Histogram(
    "turnout_worker_batch_size",
    "Rows per onnxruntime run on the workers.",
    ["model", "version"],
    buckets=BATCH_BUCKETS,
)
LOAD_SECONDS = Histogram(
    "turnout_model_load_seconds",
    "Time to load a model version into onnxruntime.",
    ["model", "version", "provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
LOADED = Gauge(
    "turnout_model_loaded",
    "1 for each model version loaded in a worker process, with its execution provider.",
    ["model", "version", "provider"],
    multiprocess_mode="livesum",
)
# Priority levels (dataplane/priority.py), counted by the gateway that enqueues.
PRIORITY_REQUESTS = Counter(
    "turnout_priority_requests",
    "Inference requests offered to a queue, by priority level and outcome (admitted, or shed: 503 at the level's cap).",
    ["level", "outcome"],
)
PRIORITY_QUEUE_SECONDS = Histogram(
    "turnout_priority_queue_seconds",
    "Time answered requests waited in the queue before their batch ran, by priority level.",
    ["level"],
    buckets=LATENCY_BUCKETS,
)
