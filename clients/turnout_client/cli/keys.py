"""`turnout keys` and `turnout plans`."""

from __future__ import annotations

from typing import Any

import click

from turnout_client.cli.context import client
from turnout_client.cli.output import emit, fields, note, table
from turnout_client.cli.registry import parse_assignments

KEY_COLUMNS = ["id", "name", "owner", "status", "model_patterns", "actions", "plan", "expires_at", "last_used_at"]
PLAN_COLUMNS = [
    "name",
    "priority",
    "requests_per_window",
    "window_seconds",
    "burst",
    "daily_quota",
    "is_default",
    "keys",
]


def _with_secret(key: dict[str, Any]) -> None:
    # The secret alone on stdout, so that `KEY=$(turnout keys create ...)` captures it; the rest on stderr.
    note(f"key {key['id']} ({key['name']}): store this secret now, it is not shown again")
    click.echo(key["secret"])


@click.group()
def keys() -> None:
    """API keys: yours (an admin sees everyone's)."""


@keys.command("list")
@click.option("--owner", help="Only this user's keys (admins).")
@click.option("--status", type=click.Choice(["active", "revoked", "expired"]))
def keys_list(owner: str | None, status: str | None) -> None:
    emit(client().keys(owner=owner, status=status), lambda rows: table(rows, KEY_COLUMNS))


@keys.command("show")
@click.argument("key_id")
def keys_show(key_id: str) -> None:
    emit(client().key(key_id), lambda k: fields(k, [*KEY_COLUMNS, "prefix", "limits", "previous_valid_until"]))


@keys.command("create")
@click.argument("name")
@click.option("--model", "patterns", multiple=True, help="A model name or glob the key reaches (repeat; default *).")
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=click.Choice(["infer", "read", "manage"]),
    help="What it may do (repeat; default infer and read).",
)
@click.option("--expires-at", help="ISO 8601 date and time, e.g. 2027-01-31T00:00:00Z (default: never).")
@click.option(
    "--future-models", is_flag=True, help="Accept --model patterns that match no model yet (a key for models to come)."
)
def keys_create(
    name: str, patterns: tuple[str, ...], actions: tuple[str, ...], expires_at: str | None, future_models: bool
) -> None:
    """Create a key; prints its secret (once) on stdout."""
    body: dict[str, Any] = {}
    if future_models:
        body["future_models"] = True
    if patterns:
        body["model_patterns"] = list(patterns)
    if actions:
        body["actions"] = list(actions)
    if expires_at:
        body["expires_at"] = expires_at
    emit(client().create_key(name, **body), _with_secret)


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace", type=click.IntRange(0, 30 * 86400), help="Seconds the old secret keeps working.")
def keys_rotate(key_id: str, grace: int | None) -> None:
    """A new secret for the key (printed once on stdout); the old one works for --grace seconds."""
    emit(client().rotate_key(key_id, grace), _with_secret)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Refuse the key from now on (every gateway within a second)."""
    emit(client().revoke_key(key_id), lambda k: click.echo(f"key {k['id']} ({k['name']}): {k['status']}"))


@keys.command("set-limits")
@click.argument("key_id")
@click.argument("limits", nargs=-1, required=True, metavar="NAME=VALUE...")
def keys_set_limits(key_id: str, limits: tuple[str, ...]) -> None:
    """Admins: plan=NAME, requests_per_window, window_seconds, burst, daily_quota (=null clears an override)."""
    changed = client().set_key_limits(key_id, **parse_assignments(limits, "limit"))
    emit(changed, lambda k: click.echo(f"key {k['id']}: plan={k['plan']} limits={k['limits']}"))


@click.group()
def plans() -> None:
    """Plans: rate limits, quota and priority of the keys on them (admins change them)."""


@plans.command("list")
def plans_list() -> None:
    emit(client().plans(), lambda rows: table(rows, PLAN_COLUMNS))


@plans.command("create")
@click.argument("name")
@click.argument("settings", nargs=-1, metavar="NAME=VALUE...")
def plans_create(name: str, settings: tuple[str, ...]) -> None:
    """e.g. `turnout plans create gold requests_per_window=1000 burst=2000 priority=high`."""
    made = client().save_plan(name, create=True, **parse_assignments(settings))
    emit(made, lambda p: table([p], PLAN_COLUMNS))


@plans.command("set")
@click.argument("name")
@click.argument("settings", nargs=-1, required=True, metavar="NAME=VALUE...")
def plans_set(name: str, settings: tuple[str, ...]) -> None:
    """Change a plan; is_default=true makes it the default (taking the flag from the previous one)."""
    changed = client().save_plan(name, create=False, **parse_assignments(settings))
    emit(changed, lambda p: table([p], PLAN_COLUMNS))


@plans.command("delete")
@click.argument("name")
def plans_delete(name: str) -> None:
    client().delete_plan(name)
    emit({"deleted": name}, lambda _: click.echo(f"plan {name} deleted"))


COMMANDS = [keys, plans]
