"""Feedback on the inference path: the arm that answered a request is remembered while a
canary or experiment runs, and `POST /v2/models/{name}/feedback` adds the reward to that
arm's running sums, which the rollout analysis reads (rollouts/analysis.py)."""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
import redis.asyncio as aioredis

from dataplane.keys import RedisKeys
from gateway.protocol import ProtocolError

logger = logging.getLogger(__name__)

FEEDBACK_TTL_SECONDS = 7 * 24 * 3600


async def remember_arm(
    client: aioredis.Redis, keys: RedisKeys, model: str, ids: list[str], rollout_id: int, arm: str
) -> None:
    """Let feedback for these request ids find the arm that answered them."""
    try:
        pipe = client.pipeline(transaction=False)
        for request_id in ids:
            pipe.set(keys.feedback_arm(model, request_id), f"{rollout_id}:{arm}", ex=FEEDBACK_TTL_SECONDS)
        await pipe.execute()
    except (aioredis.RedisError, OSError):
        logger.warning("could not record the arm of request(s) %s for feedback", ids)


async def record_feedback(client: aioredis.Redis, keys: RedisKeys, model: str, body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"the feedback body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(400, 'feedback must be an object: {"id": "<request id>", "reward": <number or bool>}')
    request_id, reward = payload.get("id"), payload.get("reward")
    if not isinstance(request_id, str) or not request_id:
        raise ProtocolError(400, "feedback needs the 'id' of the inference request (its id or X-Request-ID)")
    if isinstance(reward, bool):
        reward = 1.0 if reward else 0.0
    if not isinstance(reward, int | float) or not math.isfinite(reward):
        raise ProtocolError(400, "'reward' must be a finite number, or true/false for a conversion")
    mapping_key = keys.feedback_arm(model, request_id)
    mapping = await client.get(mapping_key)
    if mapping is None:
        raise ProtocolError(
            404,
            f"no request '{request_id}' of model '{model}' awaits feedback: feedback is joined to requests "
            "served during a canary or an experiment, for 7 days, once",
        )
    # The join is used once: a later feedback finds no mapping (404 above); two at
    # the same instant both pass the GET, and GETDEL lets only one of them count (409).
    if await client.getdel(mapping_key) is None:
        raise ProtocolError(409, f"feedback for request '{request_id}' was already recorded")
    text = mapping.decode() if isinstance(mapping, bytes) else str(mapping)
    rollout_id, _, arm = text.partition(":")
    pipe = client.pipeline(transaction=False)
    key = keys.reward_moments(int(rollout_id), arm)
    pipe.hincrby(key, "n", 1)
    pipe.hincrbyfloat(key, "sum", float(reward))
    pipe.hincrbyfloat(key, "sumsq", float(reward) * float(reward))
    pipe.expire(key, 90 * 24 * 3600)
    await pipe.execute()
    return {"id": request_id, "arm": arm, "rollout": int(rollout_id), "recorded": True}
