"""Password reset by email, through Django's views and Turnout's templates."""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis
from django.core import mail

from tests.accounts.steps import browser, csrf_token

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://testserver(/password-reset/[^/\s]+/[^/\s]+/)")


def _ask_for_a_link(client: Any, email: str) -> Any:
    token = csrf_token(client, "/password-reset/")
    return client.post("/password-reset/", {"email": email, "csrfmiddlewaretoken": token})


def test_an_unknown_address_gets_the_same_answer_and_no_email() -> None:
    response = _ask_for_a_link(browser(), "nobody@example.com")

    assert response.status_code == 302
    assert response["Location"] == "/password-reset/sent/"
    assert mail.outbox == []


def test_the_emailed_link_sets_a_new_password_once(viewer: Any) -> None:
    client = browser()

    asked = _ask_for_a_link(client, "vic@example.com")

    assert asked["Location"] == "/password-reset/sent/"
    assert "Check your email" in client.get(asked["Location"]).content.decode()
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["vic@example.com"]
    assert email.subject == "Reset your Turnout password"
    match = LINK.search(str(email.body))
    assert match is not None, email.body

    # The link redirects to a URL without the token (so it does not leak through Referer), then shows the form.
    landing = client.get(match.group(1))
    assert landing.status_code == 302
    form_url = landing["Location"]
    token = csrf_token(client, form_url)
    new = {"new_password1": "a brand new phrase", "new_password2": "a brand new phrase"}
    done = client.post(form_url, {**new, "csrfmiddlewaretoken": token})

    assert done.status_code == 302
    assert done["Location"] == "/password-reset/done/"
    assert "Your new password is set." in client.get(done["Location"]).content.decode()
    viewer.refresh_from_db()
    assert viewer.check_password("a brand new phrase")
    again = browser().get(match.group(1), follow=True).content.decode()
    assert "This link no longer works" in again


def test_a_weak_new_password_is_refused_next_to_the_field(viewer: Any) -> None:
    client = browser()
    _ask_for_a_link(client, "vic@example.com")
    match = LINK.search(str(mail.outbox[0].body))
    assert match is not None
    form_url = client.get(match.group(1))["Location"]
    token = csrf_token(client, form_url)

    response = client.post(
        form_url, {"new_password1": "12345678", "new_password2": "12345678", "csrfmiddlewaretoken": token}
    )

    assert response.status_code == 200
    assert "This password is entirely numeric." in response.content.decode()
    viewer.refresh_from_db()
    assert viewer.check_password("correct horse battery")


def test_reset_requests_from_one_address_are_limited_per_hour(
    viewer: Any, settings: Any, redis_client: redis.Redis
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "ACCOUNT_REQUESTS_PER_HOUR": 2}

    answers = [_ask_for_a_link(browser(), "vic@example.com") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert int(answers[-1]["Retry-After"]) > 3500
    assert "Too many reset requests from your address" in answers[-1].content.decode()
    assert len(mail.outbox) == 2
