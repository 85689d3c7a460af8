"""The login page, the overview behind it, and its services panel."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_login_page_renders_with_csrf(client: Client) -> None:
    response = client.get("/login/")

    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    assert b"htmx" in response.content


def test_overview_requires_login(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_login_with_csrf_enforced_reaches_the_overview(viewer: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    token = browser.get("/login/").cookies["csrftoken"].value

    response = browser.post(
        "/login/", {"username": "vic", "password": "correct horse battery", "csrfmiddlewaretoken": token}
    )

    assert response.status_code == 302
    overview = browser.get("/")
    assert overview.status_code == 200
    assert b"PostgreSQL" in overview.content


def test_wrong_password_says_so_next_to_the_form(client: Client, viewer: Any) -> None:
    response = client.post("/login/", {"username": "vic", "password": "nope"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_health_partial_for_htmx(client: Client, viewer: Any) -> None:
    client.force_login(viewer)

    partial = client.get("/health/", headers={"HX-Request": "true"})
    full = client.get("/health/", follow=True)

    assert partial.status_code == 200
    assert b"<html" not in partial.content
    assert b"Services" in partial.content
    assert b'href="/#health">Refresh</a>' in partial.content
    # Opened as a page (the Refresh link without JS, a bookmark): the overview, its table once.
    assert full.redirect_chain == [("/#health", 302)]
    assert b"<html" in full.content
    assert full.content.count(b"<h2>Services</h2>") == 1
