"""The client of the running command line, shared by the commands."""

from __future__ import annotations

import click

from turnout_client.client import Client


def client() -> Client:
    """The client for this command line, made on first use (so that --help needs no server)."""
    root = click.get_current_context().find_root()
    if "turnout.client" not in root.meta:
        options = root.meta["turnout.options"]
        made = Client(options["url"], options["api_key"], profile=options["profile"], timeout=options["timeout"])
        root.call_on_close(made.close)
        root.meta["turnout.client"] = made
    return root.meta["turnout.client"]
