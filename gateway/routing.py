"""Which version serves a request: the one it names or the `production` alias's, the
routing key, the canary or experiment arm, and whether a shadow gets a copy. Pure look-ups
on the cached catalog entry."""

from __future__ import annotations

from typing import Any

from gateway.catalog import ModelEntry, VersionEntry
from gateway.http import Scope
from gateway.protocol import ProtocolError
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


def named_version(model: ModelEntry, version: str | None) -> VersionEntry:
    """The version a request names, or without one the `production` alias's."""
    if version is None:
        if model.serving is None:
            raise ProtocolError(503, f"model '{model.name}' has no production version yet", [(b"retry-after", b"5")])
        return model.versions[model.serving]
    if not version.isdigit() or int(version) not in model.versions:
        raise ProtocolError(404, f"model '{model.name}' has no version '{version}'")
    entry = model.versions[int(version)]
    if entry.archived:
        raise ProtocolError(404, f"model '{model.name}' version {entry.number} is archived: it is no longer served")
    return entry


def require_ready(model: ModelEntry, entry: VersionEntry) -> dict[str, Any]:
    """The version's signature; 503 while it is not ready."""
    if not entry.ready or entry.signature is None:
        detail = f": {entry.status_reason}" if entry.status_reason else ""
        raise ProtocolError(
            503, f"model '{model.name}' version {entry.number} is {entry.status}{detail}", [(b"retry-after", b"5")]
        )
    return entry.signature
