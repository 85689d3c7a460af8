"""API keys on the management API (`/api/`), for scripts.

A request that presents no key is left to the other authentication classes
(the browser's session). A request that presents one is decided here: a
malformed key is refused before any database look-up, and a key must carry the
`manage` action, since `infer` and `read` keys are handed to inference clients.

A key acts only on the models its patterns match (`model_scope`): the registry,
rollouts and audit endpoints answer 404 for the others, leave them out of their
lists, and refuse to create a model whose name does not match, as /v2 does.

A request made with a key then counts against that key's rate limit and daily
quota, the same budget its inference calls use (`ApiKeyRateThrottle`); over it,
429 with `Retry-After`, `RateLimit-Policy` and `RateLimit`. As on the inference
path, the limiter fails open when Redis is unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

import redis
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts import keyformat, middleware, ratelimit, services
from accounts.lookups import LookupBudget, UnknownIds, retry_after
from accounts.models import ApiKey, KeyAction
from accounts.throttle import client_address
from controlplane.redis_client import get_redis, redis_keys

logger = logging.getLogger(__name__)

CHALLENGE = 'Bearer realm="turnout"'


class KeyRefused(exceptions.APIException):
    """A presented key that does not authenticate: 401 with a Bearer challenge.

    Not an AuthenticationFailed: APIView turns those into 403 whenever the first
    authentication class (SessionAuthentication) has no challenge to offer, and a
    refused key is an authentication failure whatever the order of the classes.
    """

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "invalid API key"
    default_code = "authentication_failed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        # exception_handler sends this as WWW-Authenticate.
        self.auth_header = CHALLENGE


def presented_key(request: Request) -> str | None:
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    api_key = request.META.get("HTTP_X_API_KEY")
    return api_key.strip() if api_key is not None else None


def model_scope(request: Request) -> ApiKey | None:
    """The key of a request made with an API key limited to some models; None for a
    session, or for a key whose patterns include `*`, which sees every model."""
    key = request.auth
    if isinstance(key, ApiKey) and not key.covers_every_model:
        return key
    return None


def allows_model(request: Request, name: str) -> bool:
    key = model_scope(request)
    return key is None or key.allows_model(name)


def _note_use(public_id: str) -> None:
    """Record the use where the gateway records its own, for the keys page's "last used"
    (the beat task `accounts.flush_last_used` copies it to the database)."""
    try:
        get_redis().hset(redis_keys().key_last_used(public_id), public_id, str(int(time.time() * 1000)))
    except redis.RedisError:
        logger.warning("could not record the use of key %s", public_id)


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`, for keys with the manage action."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = presented_key(request)
        if raw is None:
            return None
        parsed = keyformat.parse(raw)
        if parsed is None:
            raise KeyRefused("malformed API key")
        record = UNKNOWN_KEYS.look_up(parsed.public_id, client_address(request._request))
        digest, now = keyformat.digest(parsed.full, services.pepper()), time.time()
        if record is not None and not record.owner_active and replace(record, owner_active=True).accepts(digest, now):
            raise KeyRefused("the user of this key is deactivated")  # said only to the key's holder
        if record is None or not record.accepts(digest, now):
            raise KeyRefused("invalid, expired or revoked API key")
        if KeyAction.MANAGE not in record.actions:
            raise KeyRefused("this key lacks the manage scope")
        key = ApiKey.objects.select_related("user").filter(public_id=parsed.public_id).first()
        if key is None:  # deleted since key_record read it
            raise KeyRefused("invalid, expired or revoked API key")
        if not key.user.is_active:
            raise KeyRefused("the user of this key is deactivated")
        _note_use(key.public_id)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return CHALLENGE


class UnknownKeyGuard:
    """The gateway's two bounds on forged keys (accounts/lookups.py), for the management
    API: an id that matched no key is refused without a query for a minute, and each
    client address may cause only TURNOUT_UNKNOWN_KEY_LOOKUPS_PER_MINUTE look-ups that
    find nothing. Shared by the threads of one web process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unknown = UnknownIds()
        self._budget: LookupBudget | None = None
        self._per_minute = 0

    def _bucket(self) -> LookupBudget:
        per_minute = int(settings.TURNOUT["UNKNOWN_KEY_LOOKUPS_PER_MINUTE"])
        if self._budget is None or per_minute != self._per_minute:
            self._budget, self._per_minute = LookupBudget(per_minute), per_minute
        return self._budget

    def look_up(self, public_id: str, address: str | None) -> services.KeyRecord | None:
        with self._lock:
            if public_id in self._unknown:
                return None
            wait = self._bucket().take(address)
        if wait:
            raise UnknownKeysThrottled(retry_after(wait))
        record = services.key_record(public_id)
        with self._lock:
            if record is None:
                self._unknown.add(public_id)
            else:
                self._bucket().give_back(address)
        return record


class UnknownKeysThrottled(exceptions.Throttled):
    """429 with Retry-After: this address presented too many keys that match nothing."""

    def __init__(self, wait: int) -> None:
        exceptions.APIException.__init__(
            self, f"too many unknown API keys from this address; retry in {wait} s without a made-up key"
        )
        self.wait = wait


UNKNOWN_KEYS = UnknownKeyGuard()


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes ApiKeyAuthentication."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key with the manage action, as 'Authorization: Bearer <key>' "
            "(or 'X-API-Key: <key>'). Create one on the keys page.",
        }


class KeyRateLimited(exceptions.Throttled):
    """429 for a key over its rate limit or daily quota (the middleware adds the rate-limit headers)."""

    def __init__(self, wait: int, detail: str) -> None:
        # Not Throttled.__init__, which appends its own sentence about the wait to `detail`.
        exceptions.APIException.__init__(self, detail)
        self.wait = wait


LIMIT_SCRIPT = ratelimit.FUNCTION + ratelimit.BODY


class ApiKeyRateThrottle(BaseThrottle):
    """Requests authenticated by an API key spend that key's rate limit (GCRA, the same
    Lua function as the gateway's) and daily quota. Session requests, the dashboard's,
    are not limited here."""

    def allow_request(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        record = services.key_record(key.public_id)
        if record is None:  # deleted since it authenticated
            return True
        policy = record.policy
        try:
            raw = get_redis().register_script(LIMIT_SCRIPT)(
                keys=ratelimit.redis_keys(redis_keys(), key.public_id),
                args=ratelimit.script_args(policy, key.public_id),
            )
        except redis.RedisError:
            logger.warning("rate limiter unreachable: key %s not limited on this request", key.public_id)
            return True
        decision = ratelimit.decision(raw)
        middleware.note(request._request, {"RateLimit-Policy": policy.header(), "RateLimit": decision.header()})
        if decision.allowed:
            return True
        what = "daily quota" if decision.reason == "quota" else "rate limit"
        retry = max(1, decision.retry_after_seconds)
        raise KeyRateLimited(retry, f"this key is over its {what}; retry in {retry} s")
