"""What an audit entry changed, in a few short lines: the fields whose values differ between
`before` and `after`, each value cut to a readable length. No Django imports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_VALUE_CHARS = 60
MISSING = object()


@dataclass(frozen=True)
class Change:
    field: str  # dotted for nested fields: "gates.min_requests"
    before: str  # "" when the field was not there
    after: str


def _text(value: Any) -> str:
    if value is MISSING:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested objects as dotted fields, two levels deep; lists and deeper values stay whole."""
    if not isinstance(value, dict) or depth > 1:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key), depth + 1))
    return flat


def changes(before: Any, after: Any) -> list[Change]:
    """The fields that differ, in field order; a snapshot with no `before` lists what `after` holds."""
    old = _flatten(before) if isinstance(before, dict) else ({} if before is None else {"value": before})
    new = _flatten(after) if isinstance(after, dict) else ({} if after is None else {"value": after})
    found = []
    for field in sorted(set(old) | set(new)):
        was, now = old.get(field, MISSING), new.get(field, MISSING)
        if was != now:
            found.append(Change(field, _text(was), _text(now)))
    return found
