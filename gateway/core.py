"""What both transports of the Open Inference Protocol share in one process: the connections,
caches and rules of the gateway (key authentication, the catalog, the dispatcher, the recorder,
the model endpoints, Triton's extensions), and the server-level answers (metadata, readiness).
HTTP (gateway/app.py) and gRPC (gateway/grpc_server.py) each build one and only translate.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from controlplane.redis_client import redis_keys, redis_target
from gateway.auth import KeyAuth
from gateway.catalog import Catalog
from gateway.dispatch import Dispatcher
from gateway.health import Readiness
from gateway.model_endpoints import ModelEndpoints
from gateway.notices import Notices
from gateway.shadows import ShadowCopies
from gateway.triton import TritonExtensions
from observability import tracing
from observability.recorder import Recorder

logger = logging.getLogger(__name__)

SERVER_NAME = "turnout"
SERVER_VERSION = "0.1.0"
# Protocol extensions this server implements; advertised by `GET /v2` and ServerMetadata.
EXTENSIONS = ["binary_tensor_data", "statistics", "model_repository", "model_configuration"]


class GatewayCore:
    def __init__(self, readiness: Readiness | None = None) -> None:
        # Here rather than at lifespan startup: a server run without lifespan events still traces.
        # (Each gunicorn worker builds its own Gateway after the fork, so the exporter's thread is its own.)
        conf = settings.TURNOUT
        tracing.configure(
            tracing.GATEWAY_SERVICE,
            enabled=bool(conf["TRACING"]),
            ratio=float(conf["TRACING_SAMPLE_RATIO"]),
            endpoint=str(conf["TRACING_ENDPOINT"]),
        )
        self.readiness = readiness or Readiness()
        keys = redis_keys()
        self.dispatcher = Dispatcher(redis_target(), keys)
        self.notices = Notices(self.dispatcher.redis)
        self.catalog = Catalog()
        self.keys = KeyAuth(self.dispatcher.redis, self.notices, keys)
        self.recorder = Recorder(self.dispatcher.redis, keys, enabled=bool(settings.TURNOUT["METRICS_ENABLED"]))
        self.shadows = ShadowCopies(self.dispatcher, self.recorder)
        self.models = ModelEndpoints(
            self.catalog,
            self.keys,
            self.dispatcher,
            self.recorder,
            self.shadows,
            require_key=bool(settings.TURNOUT["REQUIRE_API_KEY"]),
        )
        self.triton = TritonExtensions(self.models)
        self.notices.on(keys.catalog_channel(), self.catalog.invalidate)
        self.notices.on(keys.keys_channel(), self.keys.invalidate)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    async def server_ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether this process can serve (its Redis, database, a live worker), and each check's report."""
        return await self.readiness.check()

    async def close(self) -> None:
        await self.recorder.close()
        await self.notices.close()
        self.catalog.close()
        self.keys.close()
        self.triton.close()
        await self.dispatcher.close()
        await self.readiness.close()
