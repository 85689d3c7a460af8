"""Fixtures for the latency figures: observations written to Redis by the real
`Recorder` at chosen minutes, and models registered the way users do.

Personas, besides `admin` and `viewer` from tests/conftest.py:
- `owner`: a maintainer who registers the models the pages show.

Minutes are injected into the past by pinning the clock the recorder reads;
everything else (the hash fields, the index set, the TTLs) is the recorder's own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.utils import timezone

from controlplane.redis_client import redis_keys
from observability import recorder as recorder_module
from observability.recorder import Observation, Recorder
from registry.demo_models import build_mlp


@pytest.fixture
def inject(redis_client: redis.Redis) -> Callable[..., list[Observation]]:
    """Record observations as the gateway does, with the recorder's clock at `at`, and flush them to Redis."""

    def record(items: Iterable[Observation], at: dt.datetime) -> list[Observation]:
        batch = list(items)

        async def run() -> None:
            client = aioredis.Redis.from_url(settings.REDIS_URL)
            recorder = Recorder(client, redis_keys())
            for obs in batch:
                recorder.record(obs)
            await recorder.close()
            await client.aclose()

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(recorder_module, "time", SimpleNamespace(time=lambda: at.timestamp()))
            asyncio.run(run())
        return batch

    return record


@pytest.fixture
def now() -> dt.datetime:
    """A fixed 'now', 30 s into a minute, so that a test never straddles a minute boundary."""
    moment = timezone.now()
    return moment.replace(second=30, microsecond=0)


@pytest.fixture
def artifacts(settings: Any, tmp_path: Path) -> Path:
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return tmp_path


@pytest.fixture
def register(owner: Any, artifacts: Path) -> Callable[..., Any]:
    """Register a model; with `ready`, upload a small MLP, validate it and point `production` at it."""
    from registry import services
    from registry.models import RegisteredModel, VersionStatus

    def add(name: str, *, ready: bool = True, onnx_bytes: bytes | None = None) -> Any:
        model = RegisteredModel.objects.filter(name=name).first() or services.create_model(name=name, actor=owner)
        if not ready:
            return model
        data = onnx_bytes or build_mlp(4, [8], 3)
        version = services.upload_version(model, io.BytesIO(data), actor=owner).version
        services.run_validation(version.validation_jobs.get().pk)
        version.refresh_from_db()
        assert version.status == VersionStatus.READY, version.status_reason
        services.set_alias(model, services.PRODUCTION, version, actor=owner)
        return version

    return add
