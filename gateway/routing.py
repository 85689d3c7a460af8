"""Which rollout arm serves a request: the routing key, the canary or experiment arm,
and whether a shadow gets a copy. Pure look-ups on the cached catalog entry."""

from __future__ import annotations

from gateway.catalog import ModelEntry, VersionEntry
from gateway.http import Scope
from rollouts.splitting import choose, mirrored


def routing_key(scope: Scope, header_name: str, key_id: str | None, request_id: str) -> str:
    wanted = header_name.encode()
    for name, value in scope["headers"]:
        if name == wanted and value:
            return value.decode("latin-1")
    # Without the header, the API key pins the client; without a key, nothing does.
    return key_id or request_id


def route(model: ModelEntry, key: str) -> tuple[str, VersionEntry] | None:
    """The arm and version serving this routing key, while a canary or experiment runs."""
    routing = model.routing
    if routing is None or not routing.arms or routing.kind == "shadow":
        return None
    arm = routing.arms[choose(routing.rollout_id, key, model.edges)]
    entry = model.versions.get(arm.version)
    return (arm.name, entry) if entry is not None else None


def should_mirror(model: ModelEntry, key: str) -> VersionEntry | None:
    routing = model.routing
    if routing is None or routing.kind != "shadow" or routing.shadow is None:
        return None
    if not mirrored(routing.rollout_id, key, routing.shadow_fraction):
        return None
    return model.versions.get(routing.shadow.version)
