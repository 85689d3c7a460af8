"""Template context of the account pages."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def accounts(request: HttpRequest) -> dict[str, Any]:
    """`signup_open`: whether pages link to sign-up (TURNOUT_SIGNUP_OPEN)."""
    return {"signup_open": bool(settings.TURNOUT["SIGNUP_OPEN"])}
