"""What a test does the way a user or the worker would: a CSRF-enforcing browser, a validation run."""

from __future__ import annotations

from typing import Any

from django.test import Client

from registry import services
from registry.models import ModelVersion


def browser_for(user: Any) -> Client:
    """A client that enforces CSRF like a browser, signed in as `user`."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    return browser


def csrf_token(browser: Client, page: str) -> str:
    """Load a page (as a browser would before posting a form) and return the CSRF cookie."""
    assert browser.get(page).status_code == 200
    return str(browser.cookies["csrftoken"].value)


def validate(version: ModelVersion) -> ModelVersion:
    """Run the real validation (in a child process) as the worker would, and re-read the version."""
    services.run_validation(version.validation_jobs.get().pk)
    version.refresh_from_db()
    return version
