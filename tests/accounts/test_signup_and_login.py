"""Sign up, the throttled log in, log out."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model

from accounts import throttle
from audit.models import AuditEntry
from tests.accounts.steps import browser, csrf_token

pytestmark = pytest.mark.django_db

GOOD = "correct horse battery"


def _signup(client: Any, **fields: str) -> Any:
    token = csrf_token(client, "/signup/")
    data = {"username": "sam", "email": "sam@example.com", "password1": "a fine long phrase", "password2": ""}
    data["password2"] = data["password1"]
    data.update(fields)
    return client.post("/signup/", {**data, "csrfmiddlewaretoken": token})


def _log_in(client: Any, password: str, username: str = "vic", **extra: Any) -> Any:
    token = csrf_token(client, "/login/")
    return client.post("/login/", {"username": username, "password": password, "csrfmiddlewaretoken": token}, **extra)


def _signed_in(client: Any) -> bool:
    return "_auth_user_id" in client.session


# --- Sign up ----------------------------------------------------------------------


def test_mismatched_and_common_passwords_are_refused_next_to_the_field() -> None:
    client = browser()

    mismatch = _signup(client, password2="another long phrase").content.decode()
    common = _signup(client, password1="password123", password2="password123").content.decode()

    assert "The two password fields didn" in mismatch
    assert "This password is too common." in common
    assert 'role="alert"' in common
    assert not get_user_model().objects.filter(username="sam").exists()


def test_a_username_or_email_already_taken_is_refused(viewer: Any) -> None:
    client = browser()

    by_name = _signup(client, username="vic").content.decode()
    by_email = _signup(client, email="VIC@example.com").content.decode()

    assert "A user with that username already exists." in by_name
    assert "An account with this email already exists" in by_email
    assert get_user_model().objects.count() == 1


def test_sign_up_logs_the_user_in_and_is_audited_without_the_email() -> None:
    client = browser()

    response = _signup(client)

    assert response.status_code == 302
    assert response["Location"] == "/keys/"
    user = get_user_model().objects.get(username="sam")
    assert user.email == "sam@example.com"
    assert user.check_password("a fine long phrase")
    assert _signed_in(client)
    assert "Create an API key" in client.get("/keys/").content.decode()
    entry = AuditEntry.objects.get(action="user.signed_up")
    assert entry.actor == user
    assert entry.after == {"username": "sam"}


def test_the_signup_page_links_to_log_in_and_the_login_page_to_sign_up_and_reset() -> None:
    client = browser()

    signup = client.get("/signup/").content.decode()
    login = client.get("/login/").content.decode()

    assert 'href="/login/"' in signup
    assert 'href="/signup/"' in login
    assert 'href="/password-reset/"' in login


def test_a_signed_in_user_going_to_sign_up_lands_on_the_keys_page(viewer: Any) -> None:
    response = browser(viewer).get("/signup/")

    assert response.status_code == 302
    assert response["Location"] == "/keys/"


def test_sign_ups_from_one_address_are_limited_per_hour(settings: Any, redis_client: redis.Redis) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "ACCOUNT_REQUESTS_PER_HOUR": 2}

    answers = [_signup(browser(), username=f"sam{i}", email=f"sam{i}@example.com") for i in range(3)]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    refused = answers[-1]
    assert 3540 <= int(refused["Retry-After"]) <= 3600
    assert "Too many sign-ups from your address; try again in 60 minutes." in refused.content.decode()
    assert sorted(get_user_model().objects.values_list("username", flat=True)) == ["sam0", "sam1"]


def test_with_sign_up_closed_the_page_says_so_and_creates_nobody(settings: Any) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "SIGNUP_OPEN": False}
    client = browser()

    page = client.get("/signup/")
    token = csrf_token(client, "/login/")
    fields = {"username": "sam", "email": "sam@example.com", "password1": "a fine long phrase"}
    posted = client.post("/signup/", {**fields, "password2": fields["password1"], "csrfmiddlewaretoken": token})

    assert page.status_code == 403
    assert "Sign-up is closed" in page.content.decode()
    assert posted.status_code == 403
    assert "Sign-up is closed" in posted.content.decode()
    assert not get_user_model().objects.filter(username="sam").exists()
    assert 'href="/signup/"' not in client.get("/login/").content.decode()


# --- Log in and its throttle ------------------------------------------------------


def test_six_bad_passwords_are_answered_429_and_even_the_right_one_is_refused(
    viewer: Any, redis_client: redis.Redis
) -> None:
    client = browser()
    counter = throttle.counter_key("vic", "127.0.0.1")

    first_five = [_log_in(client, "wrong").status_code for _ in range(5)]
    sixth = _log_in(client, "wrong")
    right = _log_in(client, GOOD)

    assert first_five == [200] * 5
    assert sixth.status_code == 429
    assert "Too many failed attempts; try again in 5 minutes." in sixth.content.decode()
    assert 0 < int(sixth["Retry-After"]) <= 300
    assert right.status_code == 429
    assert not _signed_in(client)
    # Refused attempts still count, but never move the end of the window.
    assert int(redis_client.get(counter) or 0) == 7
    assert 0 < redis_client.ttl(counter) <= 300


def test_the_throttle_is_per_username_and_address(viewer: Any, redis_client: redis.Redis) -> None:
    for _ in range(5):
        _log_in(browser(), "wrong")

    from_elsewhere = _log_in(browser(), GOOD, REMOTE_ADDR="10.0.0.2")

    assert from_elsewhere.status_code == 302
    assert redis_client.exists(throttle.counter_key("vic", "10.0.0.2")) == 0
    assert int(redis_client.get(throttle.counter_key("vic", "127.0.0.1")) or 0) == 5


def test_a_successful_login_deletes_the_counter(viewer: Any, redis_client: redis.Redis) -> None:
    client = browser()
    _log_in(client, "wrong")
    _log_in(client, "wrong")
    assert int(redis_client.get(throttle.counter_key("vic", "127.0.0.1")) or 0) == 2

    response = _log_in(client, GOOD)

    assert response.status_code == 302
    assert _signed_in(client)
    assert redis_client.exists(throttle.counter_key("vic", "127.0.0.1")) == 0


def test_the_right_password_works_again_once_the_window_is_over(
    viewer: Any, redis_client: redis.Redis, settings: Any
) -> None:
    settings.TURNOUT = {**settings.TURNOUT, "LOGIN_THROTTLE_ATTEMPTS": 2}
    client = browser()
    counter = throttle.counter_key("vic", "127.0.0.1")
    _log_in(client, "wrong")
    _log_in(client, "wrong")
    refused = _log_in(client, GOOD)

    redis_client.pexpire(counter, 1)  # the window ends, as Redis ends it
    time.sleep(0.05)
    response = _log_in(client, GOOD)

    assert refused.status_code == 429
    assert response.status_code == 302
    assert _signed_in(client)
    assert redis_client.exists(counter) == 0


def test_the_wait_is_given_in_whole_minutes_rounded_up() -> None:
    assert throttle.refusal(30) == "Too many failed attempts; try again in 1 minute."
    assert throttle.refusal(61) == "Too many failed attempts; try again in 2 minutes."


def test_parallel_attempts_cannot_all_slip_under_the_limit(redis_client: redis.Redis) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: throttle.attempt("vic", "10.0.0.9"), range(20)))

    assert answers.count(0) == 5
    assert all(0 < wait <= 300 for wait in answers if wait)
    assert int(redis_client.get(throttle.counter_key("vic", "10.0.0.9")) or 0) == 20


def test_with_redis_down_logins_proceed_and_a_warning_is_logged(
    viewer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: every Redis call fails the way it does when Redis is down.
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    monkeypatch.setattr(throttle, "get_redis", lambda: dead)
    client = browser()

    with caplog.at_level(logging.WARNING, logger="accounts.throttle"):
        bad = _log_in(client, "wrong")
        good = _log_in(client, GOOD)

    assert bad.status_code == 200
    assert "Please enter a correct username and password." in bad.content.decode()
    assert good.status_code == 302
    assert _signed_in(client)
    assert "login throttle: Redis unavailable" in caplog.text


# --- Log out ------------------------------------------------------------------------


def test_log_out_is_a_post(viewer: Any) -> None:
    client = browser(viewer)
    token = csrf_token(client, "/keys/")

    by_get = client.get("/logout/")
    by_post = client.post("/logout/", {"csrfmiddlewaretoken": token})

    assert by_get.status_code == 405
    assert by_post.status_code == 302
    assert by_post["Location"] == "/login/"
    assert not _signed_in(client)
