"""Throttles of the account pages, counted in Redis.

Sign-up and password-reset requests: TURNOUT["ACCOUNT_REQUESTS_PER_HOUR"] of
each per client address and hour (`account_request`), so that one client can
neither create accounts in bulk nor flood an inbox with reset links.

Log in: failed logins counted per (username, client address).

After TURNOUT["LOGIN_THROTTLE_ATTEMPTS"] failures within
TURNOUT["LOGIN_THROTTLE_WINDOW_SECONDS"] (counted from the first attempt), further
attempts for that pair are refused without checking the password until the
window ends; a successful login clears the count. The window is fixed rather
than sliding so that a locked-out user learns when to come back, and an
attacker cannot keep a victim locked out past it by trying again.

Redis being down must not lock everyone out: the throttle then fails open,
with a warning in the log.
"""

from __future__ import annotations

import hashlib
import logging
import math

import redis
from django.conf import settings
from django.http import HttpRequest

from controlplane.redis_client import get_redis, redis_keys

logger = logging.getLogger(__name__)


def client_address(request: HttpRequest | None) -> str:
    # REMOTE_ADDR, not X-Forwarded-For: a client sets that header to anything it likes. Behind a
    # proxy every client shares the proxy's address, and the throttle is then per username.
    return str(request.META.get("REMOTE_ADDR", "")) if request is not None else ""


def counter_key(username: str, address: str) -> str:
    # Hashed: usernames are user input of any length and content.
    ident = hashlib.sha256(f"{username.casefold()}\0{address}".encode()).hexdigest()[:32]
    return redis_keys().login_failures(ident)


def _count(key: str, limit: int, window: int) -> int:
    """Count one attempt in a fixed window that starts at the first; 0 if it is within
    `limit`, else the seconds until the window ends. Raises RedisError.

    Counting first, in one MULTI/EXEC, is what makes the limit hold under
    concurrency: parallel attempts cannot all pass a check made before any of them
    is counted.
    """
    pipe = get_redis().pipeline()
    pipe.set(key, 0, ex=window, nx=True)  # the window starts at the first attempt and never moves
    pipe.incr(key)
    pipe.ttl(key)
    _, count, ttl = pipe.execute()
    if count <= limit:
        return 0
    return ttl if ttl > 0 else window


def account_request(kind: str, address: str) -> int:
    """Count a sign-up or password-reset request from `address`: 0 if it may go ahead, else
    the seconds to wait. TURNOUT["ACCOUNT_REQUESTS_PER_HOUR"] of each kind per address
    and hour; fails open without Redis, like the login throttle."""
    ident = hashlib.sha256(address.encode()).hexdigest()[:32]
    key = redis_keys().account_requests(kind, ident)
    try:
        return _count(key, int(settings.TURNOUT["ACCOUNT_REQUESTS_PER_HOUR"]), 3600)
    except redis.RedisError:
        logger.warning("account throttle: Redis unavailable; not throttling %s requests", kind)
        return 0


def attempt(username: str, address: str) -> int:
    """Count a login attempt before its password is checked: 0 if it may go ahead, else the
    seconds until `username` may try again from `address`. A successful attempt then
    clears the count (`succeeded`), so what stays counted are the failures."""
    key = counter_key(username, address)
    window = int(settings.TURNOUT["LOGIN_THROTTLE_WINDOW_SECONDS"])
    try:
        return _count(key, int(settings.TURNOUT["LOGIN_THROTTLE_ATTEMPTS"]), window)
    except redis.RedisError:
        logger.warning("login throttle: Redis unavailable; not throttling %r", username)
        return 0


def succeeded(username: str, address: str) -> None:
    try:
        get_redis().delete(counter_key(username, address))
    except redis.RedisError:
        logger.warning("login throttle: Redis unavailable; could not clear the count for %r", username)


def refusal(seconds: int, what: str = "failed attempts") -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"Too many {what}; try again in {minutes} minute{'s' if minutes != 1 else ''}."
