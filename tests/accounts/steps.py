"""What a test does the way a browser or a script would."""

from __future__ import annotations

import re
from typing import Any

import redis
from django.test import Client

from accounts import keyformat

SECRET = re.compile(r"tk_(?:live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}")
HTMX = {"HX-Request": "true"}


def browser(user: Any = None) -> Client:
    """A client that enforces CSRF like a browser; signed in as `user` when given."""
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def csrf_token(client: Client, page: str) -> str:
    """Load a page (as a browser does before posting its form) and return the CSRF cookie."""
    assert client.get(page).status_code == 200
    return str(client.cookies["csrftoken"].value)


def htmx_post(client: Client, url: str, data: dict[str, Any], token: str) -> Any:
    """A POST as htmx sends it: the CSRF token in the header that base.html's hx-headers sets."""
    return client.post(url, data, headers={**HTMX, "X-CSRFToken": token})


def secrets_in(html: str) -> list[str]:
    return [match for match in SECRET.findall(html) if keyformat.parse(match) is not None]


def notices(pubsub: redis.client.PubSub, timeout: float = 1.0) -> set[str]:
    """The key change notices received within `timeout` seconds."""
    received: set[str] = set()
    while (message := pubsub.get_message(timeout=timeout)) is not None:
        received.add(message["data"].decode())
        timeout = 0.2
    return received
