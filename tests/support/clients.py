"""Django test clients signed in as a user, without a login form (CSRF checks off, as the
test client's default): for tests about what a user may see or do, not about logging in.
And the header that signs a request in with an API key."""

from __future__ import annotations

from typing import Any, TypeVar

from django.test import Client

C = TypeVar("C", bound=Client)


def signed_in(user: Any, client_class: type[C] = Client) -> C:  # type: ignore[assignment]
    client = client_class()
    client.force_login(user)
    return client


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header carrying an API key."""
    return {"authorization": f"Bearer {secret}"}
