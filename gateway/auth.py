"""API-key authentication and rate limiting on the inference path.

A key is checked in this order, stopping at the first failure:
1. its shape and checksum (no I/O at all: a mistyped or made-up key never reaches
   a cache or the database);
2. the in-process cache of key records, filled from PostgreSQL on a miss and
   dropped on every key change notice (revocation applies within milliseconds);
   an id that matched no key is remembered a minute (accounts/lookups.py), and
   each client address may cause only TURNOUT_UNKNOWN_KEY_LOOKUPS_PER_MINUTE
   look-ups of keys that are not cached: past that, 429 without a look-up;
3. an HMAC of the presented key against the stored digest(s), in constant time;
4. revocation, expiry, the owner's account, and the rotation grace period of a
   previous secret.
Every failure is the same 401, so a caller learns nothing about which keys exist.

When the change notices are not connected, records are re-read from the
database on every request: authentication fails closed. The rate limiter, one
Lua script in Redis, fails open instead: an unreachable Redis must not turn
every request away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis
from django.conf import settings
from django.db import DatabaseError, connection

from accounts import keyformat, ratelimit
from accounts.lookups import LookupBudget, UnknownIds, retry_after
from accounts.services import KeyRecord, key_record, pepper
from dataplane.keys import RedisKeys
from gateway.coalesce import ScriptBatcher
from gateway.http import Scope
from gateway.notices import Notices
from gateway.protocol import ProtocolError

logger = logging.getLogger(__name__)

CACHE_TTL_SECONDS = 300.0
SEEN_KEYS = 10_000
# Threads (so at most this many database connections at once) for key look-ups.
LOOKUP_THREADS = 2
UNAUTHORIZED = "a valid API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="turnout", error="invalid_token"')]


def unauthorized() -> ProtocolError:
    return ProtocolError(401, UNAUTHORIZED, list(_CHALLENGE))


def presented_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
    return None


def too_many_lookups(seconds: float) -> ProtocolError:
    retry = retry_after(seconds)
    return ProtocolError(
        429,
        f"too many look-ups of unknown API keys from your address; retry in {retry} s",
        [(b"retry-after", str(retry).encode())],
    )


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _load(public_id: str) -> KeyRecord | None:
    # A connection per cache miss, closed at once: misses are rare (once per key
    # per process), and a pool thread must not hold a connection open forever.
    try:
        return key_record(public_id)
    finally:
        connection.close()


class KeyAuth:
    def __init__(
        self, client: aioredis.Redis, notices: Notices, keys: RedisKeys, lookups_per_minute: int | None = None
    ) -> None:
        self._redis = client
        self._notices = notices
        self._keys = keys
        self._pepper = pepper()
        # Only keys that exist: as many as users have created.
        self._records: dict[str, tuple[KeyRecord, float]] = {}
        self._unknown = UnknownIds()
        if lookups_per_minute is None:
            lookups_per_minute = int(settings.TURNOUT["UNKNOWN_KEY_LOOKUPS_PER_MINUTE"])
        self._budget = LookupBudget(lookups_per_minute)
        # Bumped by every change notice: a look-up that a notice overtook is not cached,
        # since it may have read the row before the change was committed.
        self._generation = 0
        self._seen: dict[str, tuple[str, str]] = {}  # presented key -> (public id, digest), accepted before
        self._loading: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=LOOKUP_THREADS, thread_name_prefix="turnout-keys")
        self._limit = ScriptBatcher(client, ratelimit.BODY, prelude=ratelimit.FUNCTION)

    def invalidate(self, public_id: str | None = None) -> None:
        self._generation += 1
        if public_id is None:
            self._records.clear()
            self._unknown.clear()
        else:
            self._records.pop(public_id, None)
            self._unknown.discard(public_id)

    async def authenticate(self, scope: Scope) -> KeyRecord:
        raw = presented_key(scope)
        if not raw:
            raise unauthorized()
        # A key seen before skips parsing and the HMAC: its public id and digest
        # are remembered. The record itself is still looked up (and re-read after
        # any change notice), and `accepts` still checks revocation, expiry and
        # the rotation grace period on every request.
        seen = self._seen.get(raw)
        if seen is None:
            parsed = keyformat.parse(raw)
            if parsed is None:
                raise unauthorized()
            seen = (parsed.public_id, keyformat.digest(parsed.full, self._pepper))
        record = await self._record(seen[0], client_address(scope))
        if record is None or not record.accepts(seen[1], time.time()):
            raise unauthorized()
        if raw not in self._seen:
            if len(self._seen) >= SEEN_KEYS:
                self._seen.clear()
            self._seen[raw] = seen
        return record

    async def _record(self, public_id: str, address: str | None) -> KeyRecord | None:
        cached = self._records.get(public_id)
        if cached is not None and self._notices.connected and time.monotonic() < cached[1]:
            return cached[0]
        # Refusing an id known to match nothing is failing closed: no need to hear notices for it.
        if public_id in self._unknown:
            return None
        # One database read per key however many requests arrive with it at once.
        pending = self._loading.get(public_id)
        if pending is None:
            wait = self._budget.take(address)
            if wait:
                raise too_many_lookups(wait)
            pending = asyncio.ensure_future(self._load(public_id, address))
            self._loading[public_id] = pending
            pending.add_done_callback(lambda _: self._loading.pop(public_id, None))
        return await asyncio.shield(pending)

    async def _load(self, public_id: str, address: str | None) -> KeyRecord | None:
        generation = self._generation
        try:
            record = await asyncio.get_running_loop().run_in_executor(self._executor, _load, public_id)
        except DatabaseError:
            self._budget.give_back(address)
            logger.warning("key %s: database unavailable; refusing", public_id)
            raise unauthorized() from None
        if record is None:
            self._unknown.add(public_id)
            return None
        self._budget.give_back(address)
        if self._notices.connected and generation == self._generation:
            self._records[public_id] = (record, time.monotonic() + CACHE_TTL_SECONDS)
        return record

    async def rate_limit(self, record: KeyRecord) -> list[tuple[bytes, bytes]]:
        """Headers for the response; raises 429 over the limit or the quota."""
        try:
            raw = await self._limit(
                ratelimit.redis_keys(self._keys, record.public_id),
                ratelimit.script_args(record.policy, record.public_id),
            )
        except (aioredis.RedisError, OSError):
            logger.warning("rate limiter unreachable; letting key %s through", record.public_id)
            return []
        return self.verdict(record, raw)

    def admission(self, record: KeyRecord) -> tuple[list[str], list[str | int | float]]:
        """Keys and arguments of the rate limit, for the gateway's admit-and-enqueue script."""
        return ratelimit.redis_keys(self._keys, record.public_id), ratelimit.script_args(
            record.policy, record.public_id
        )

    def verdict(self, record: KeyRecord, raw: list[object]) -> list[tuple[bytes, bytes]]:
        """The response headers of a rate-limit decision; 429 when it refused."""
        policy = record.policy
        decision = ratelimit.decision(raw)
        headers = [(b"ratelimit-policy", policy.header_value), (b"ratelimit", decision.header().encode())]
        if not decision.allowed:
            what = "daily quota" if decision.reason == "quota" else "rate limit"
            retry = max(1, decision.retry_after_seconds)
            raise ProtocolError(
                429,
                f"this key is over its {what}; retry in {retry} s",
                [*headers, (b"retry-after", str(retry).encode())],
            )
        return headers

    def close(self) -> None:
        self._executor.shutdown(wait=False)
