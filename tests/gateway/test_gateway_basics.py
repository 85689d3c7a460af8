"""The V2 gateway's server-level endpoints: metadata, liveness, method and path errors."""

from __future__ import annotations

import pytest

from tests.support.asgi import AsgiClient
from tests.support.v2 import Gateway


def test_unknown_v2_path_is_a_json_404(gateway_client: AsgiClient) -> None:
    response = gateway_client.get("/v2/nothing/here")

    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    assert "no such endpoint: /v2/nothing/here" in response.json()["error"]


def test_wrong_method_is_405_with_allow(gateway_client: AsgiClient) -> None:
    response = gateway_client.post("/v2/health/live")

    assert response.status == 405
    assert response.headers["allow"] == "GET"
    assert "POST not allowed" in response.json()["error"]


def test_live_answers_without_touching_dependencies(gateway_client: AsgiClient) -> None:
    response = gateway_client.get("/v2/health/live")

    assert response.status == 200
    assert response.json() == {"live": True}


def test_server_metadata_names_the_server(gateway_client: AsgiClient) -> None:
    response = gateway_client.get("/v2")

    assert response.status == 200
    body = response.json()
    assert body["name"] == "turnout"
    assert isinstance(body["version"], str)
    assert isinstance(body["extensions"], list)


def test_trailing_slash_and_head_are_accepted(gateway_client: AsgiClient) -> None:
    assert gateway_client.get("/v2/").status == 200
    assert gateway_client.request("HEAD", "/v2/health/live").status == 200


@pytest.mark.django_db(transaction=True)
def test_server_metadata_advertises_binary_tensor_data(gateway: Gateway) -> None:
    response = gateway.get("/v2")

    assert response.status == 200
    assert "binary_tensor_data" in response.json()["extensions"]
