"""The inference API's own documents, served by Django beside the management API's: the hand-written
OpenAPI document of `/v2` (gateway/openapi/inference.yaml; the gateway is no DRF view for
drf-spectacular to describe), Swagger UI over it, and the gRPC service's `.proto`."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "openapi" / "inference.yaml"
PROTO = HERE / "proto" / "grpc_predict_v2.proto"


@cache
def _schema() -> dict[str, object]:
    loaded = yaml.safe_load(SCHEMA.read_text())
    # The YAML anchor's holder is only there to be referred to.
    return {key: value for key, value in loaded.items() if not key.startswith("x-")}


@require_GET
def inference_schema(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_schema())


@require_GET
def grpc_proto(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(PROTO.read_bytes(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="grpc_predict_v2.proto"'
    return response
