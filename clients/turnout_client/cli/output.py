"""How the `turnout` command shows answers: readable text by default, the API's JSON with
`--json` (for scripts), errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays in inference answers
        return value.tolist()
    return str(value)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=_default, ensure_ascii=False)


def emit(data: Any, human: Callable[[Any], None] | None = None) -> None:
    """`data` as JSON under --json, else through `human` (or as JSON when there is none)."""
    ctx = click.get_current_context()
    if ctx.find_root().meta.get("turnout.json") or human is None:
        click.echo(dumps(data))
    else:
        human(data)


def json_mode() -> bool:
    return bool(click.get_current_context().find_root().meta.get("turnout.json"))


def note(message: str) -> None:
    """Progress for people, on stderr so that stdout stays the answer; silent under --json."""
    if not json_mode():
        click.echo(message, err=True)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str = "(none)") -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def fields(data: dict[str, Any], names: Sequence[str]) -> None:
    width = max(len(n) for n in names)
    for name in names:
        if name in data:
            click.echo(f"{name.ljust(width)}  {cell(data[name])}")


def error(payload: dict[str, Any], message: str) -> None:
    if json_mode():
        click.echo(dumps(payload), err=True)
    else:
        click.echo(f"error: {message}", err=True)
    sys.stderr.flush()
