"""The inference API's documents served beside the management API's: the OpenAPI document of
/v2 (every route the gateway answers), its Swagger UI page, and the gRPC service's .proto."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core import EXTENSIONS

pytestmark = pytest.mark.django_db

ROUTES = {
    "/v2": "get",
    "/v2/health/live": "get",
    "/v2/health/ready": "get",
    "/v2/models/{name}": "get",
    "/v2/models/{name}/versions/{version}": "get",
    "/v2/models/{name}/ready": "get",
    "/v2/models/{name}/versions/{version}/ready": "get",
    "/v2/models/{name}/infer": "post",
    "/v2/models/{name}/versions/{version}/infer": "post",
    "/v2/models/{name}/feedback": "post",
    "/v2/models/stats": "get",
    "/v2/models/{name}/stats": "get",
    "/v2/models/{name}/versions/{version}/stats": "get",
    "/v2/models/{name}/config": "get",
    "/v2/models/{name}/versions/{version}/config": "get",
    "/v2/repository/index": "post",
    "/v2/repository/models/{name}/load": "post",
    "/v2/repository/models/{name}/unload": "post",
}


def test_the_openapi_document_describes_every_inference_route(client: Any) -> None:
    response = client.get("/api/inference/schema/")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {path: next(iter(ops)) for path, ops in schema["paths"].items()} == ROUTES
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert "200" in operation["responses"], path
    assert "gzip" in schema["info"]["description"]
    assert "GRPCInferenceService" in schema["info"]["description"]
    assert not [key for key in schema if key.startswith("x-")]


def test_the_docs_page_and_the_proto_are_served(client: Any) -> None:
    page = client.get("/api/inference/docs/")
    assert page.status_code == 200
    assert b"/api/inference/schema/" in page.content
    proto = client.get("/api/inference/grpc_predict_v2.proto")
    assert proto.status_code == 200
    assert b"service GRPCInferenceService" in proto.content
    assert b"package inference;" in proto.content


def test_the_server_advertises_the_extensions_it_serves(gateway: Any) -> None:
    response = gateway.get("/v2")
    assert response.status == 200
    assert response.json()["extensions"] == EXTENSIONS
    assert {"binary_tensor_data", "statistics", "model_repository", "model_configuration"} <= set(EXTENSIONS)
