"""The benchmark models (`make bench`, bench/run.py) and their API key, registered,
validated and serving as `production`.

Idempotent: the artifacts are built deterministically, so running it again finds the
same versions (same sha256) and only corrects their serving settings if they drifted.
Each model comes twice: batching on (`max_batch_size` 64) and batching off
(`max_batch_size` 1, the `-nobatch` twin with the same bytes). `sentiment` is the demo
pipeline (ops/demo_pipeline.py) under bench names; its stage models are named
`benchstage-...`, outside the benchmark worker's `bench-*`, so no worker serves them alone.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from accounts import keyformat
from accounts import services as key_services
from accounts.models import ApiKey
from ops.demo_pipeline import register_sentiment
from registry import demo_models, services
from registry.models import RegisteredModel, VersionStatus


@dataclass(frozen=True)
class BenchModel:
    key: str  # mlp_small, mlp_large: the names
    name: str  # registered name, batching on
    input_dim: int
    output_dim: int
    description: str
    build: Callable[[], bytes] | None  # None: a pipeline, registered by `register_pipeline`

    @property
    def is_pipeline(self) -> bool:
        return self.build is None

    @property
    def nobatch_name(self) -> str:
        return f"{self.name}-nobatch"


def build_mlp_large_int8() -> bytes:
    """mlp_large with its weights quantized to INT8 by onnxruntime's dynamic quantizer: the variant
    the benchmark puts next to its parent (the same inputs and outputs, FP32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # only the benchmark needs it

    with tempfile.TemporaryDirectory(prefix="turnout-bench-") as scratch:
        source, target = Path(scratch) / "parent.onnx", Path(scratch) / "int8.onnx"
        source.write_bytes(demo_models.build_mlp_large())
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return target.read_bytes()


BENCH_MODELS: dict[str, BenchModel] = {
    "mlp_small": BenchModel(
        "mlp_small",
        "bench-mlp-small",
        64,
        10,
        "Benchmark MLP: FP32 [batch, 64] -> 256 -> 256 -> 10 (Relu).",
        demo_models.build_mlp_small,
    ),
    "mlp_large": BenchModel(
        "mlp_large",
        "bench-mlp-large",
        512,
        1000,
        "Benchmark MLP: FP32 [batch, 512] -> 2048 -> 2048 -> 2048 -> 1000 (Relu).",
        demo_models.build_mlp_large,
    ),
    "mlp_large_int8": BenchModel(
        "mlp_large_int8",
        "bench-mlp-large-int8",
        512,
        1000,
        "Benchmark MLP: mlp_large with INT8 weights (onnxruntime dynamic quantization).",
        build_mlp_large_int8,
    ),
    "sentiment": BenchModel(
        "sentiment",
        "bench-sentiment",
        0,
        0,
        "Benchmark pipeline: the sentiment demo, BYTES text -> preprocess -> classifier -> postprocess.",
        None,
    ),
}
PIPELINE_STAGE_PREFIX = "benchstage-"

KEY_FILE = Path(settings.BASE_DIR) / "var" / "bench-key.json"
BENCH_USER = "bench"
# The benchmark's key must never be rate limited, but the limiter still runs on every request.
UNLIMITED: dict[str, int | None] = {"requests_per_window": 1_000_000, "window_seconds": 1, "burst": 1_000_000}

BATCHING_ON = {"max_batch_size": 64, "max_queue_delay_ms": 2.0}
BATCHING_OFF = {"max_batch_size": 1, "max_queue_delay_ms": 0.0}


class BenchSetupError(Exception):
    """A benchmark model could not be registered (it failed validation)."""


def register(name: str, description: str, artifact: bytes, serving: dict[str, Any]) -> str:
    """Register, validate inline and serve one benchmark model; a line saying what was done."""
    model = RegisteredModel.objects.filter(name=name).first()
    if model is None:
        model = services.create_model(name=name, description=description, tags=["benchmark"], actor=None)
    result = services.upload_version(model, io.BytesIO(artifact), actor=None, description=description, **serving)
    version = result.version
    # Validated here rather than by a worker: it must be ready before workers start.
    version = services.validate_now(version)
    if version.status != VersionStatus.READY:
        raise BenchSetupError(f"{name} v{version.number} failed validation: {version.status_reason}")
    drift = {field: value for field, value in serving.items() if getattr(version, field) != value}
    if drift:
        version = services.update_version(version, actor=None, **drift)
    current = services.serving_version(model)
    if current is None or current.pk != version.pk:
        services.set_alias(model, services.PRODUCTION, version, actor=None)
    state = "registered" if result.created else "already registered"
    return f"{name}: v{version.number} {state}, max_batch_size {version.max_batch_size}, production"


def register_pipeline(name: str, serving: dict[str, Any]) -> str:
    """Register, validate inline and serve the benchmark pipeline; a line saying what was done."""
    version, created = register_sentiment(None, name=name, stage_prefix=PIPELINE_STAGE_PREFIX, **serving)
    drift = {field: value for field, value in serving.items() if getattr(version, field) != value}
    if drift:
        version = services.update_version(version, actor=None, **drift)
    current = services.serving_version(version.model)
    if current is None or current.pk != version.pk:
        services.set_alias(version.model, services.PRODUCTION, version, actor=None)
    state = "registered" if created else "already registered"
    return f"{name}: v{version.number} {state}, max_batch_size {version.max_batch_size}, production"


def served_names(keys: list[str]) -> list[str]:
    """Every registered name the benchmark of these models uses."""
    names = []
    for key in keys:
        names += [BENCH_MODELS[key].name, BENCH_MODELS[key].nobatch_name]
    return names


def bench_key() -> str:
    """The benchmark's API key (scoped to bench-*, no effective rate limit), created once and
    kept in var/bench-key.json; a new one only if that one was revoked, expired or deleted."""
    try:
        secret = str(json.loads(KEY_FILE.read_text())["api_key"])
    except (OSError, ValueError, KeyError):
        secret = ""
    user, created = get_user_model().objects.get_or_create(username=BENCH_USER, defaults={"email": "bench@localhost"})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    parsed = keyformat.parse(secret) if secret else None
    if parsed is not None:
        existing = ApiKey.objects.filter(public_id=parsed.public_id, user=user).first()
        if (
            existing is not None
            and existing.status == "active"
            and existing.digest == keyformat.digest(secret, key_services.pepper())
            and all(getattr(existing, field) == value for field, value in UNLIMITED.items())
        ):
            return secret
    key, secret = key_services.create_key(
        user, name="make bench", model_patterns=["bench-*"], actions=["infer", "read"], actor=None, future_models=True
    )
    key_services.set_limits(key, actor=None, plan=None, **UNLIMITED)
    KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEY_FILE.write_text(json.dumps({"api_key": secret}, indent=2))
    KEY_FILE.chmod(0o600)
    return secret
