"""`turnout`: Turnout's models, versions, aliases, rollouts, keys and inference from a terminal or CI.

Exit statuses (stable; docs/cli.md): 0 ok, 1 unexpected error, 2 usage or configuration,
3 refused by the API, 4 not found or not allowed, 5 rollout not promoted, 6 timed out,
7 server unreachable or failing, 8 a job failed (validation, quantization, comparison, capacity).
"""

from __future__ import annotations

from typing import Any

import click

from turnout_client import errors
from turnout_client.cli import infer, keys, output, registry, rollouts


class TurnoutGroup(click.Group):
    """Turns the client's errors into a message on stderr and their exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.TurnoutError as exc:
            output.error(exc.as_dict(), exc.message)
            ctx.exit(exc.exit_code)
        except ImportError as exc:  # numpy, for --npy and binary tensors
            output.error({"error": str(exc), "exit_code": errors.USAGE}, str(exc))
            ctx.exit(errors.USAGE)
        except OSError as exc:  # a file named on the command line
            message = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
            output.error({"error": message, "exit_code": errors.USAGE}, message)
            ctx.exit(errors.USAGE)


@click.group(cls=TurnoutGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL", help="Server, e.g. https://turnout.example.com (else TURNOUT_URL, a profile).")
@click.option("--api-key", metavar="KEY", help="API key (else TURNOUT_API_KEY, a profile). Prefer the variable.")
@click.option("--profile", metavar="NAME", help="Profile in ~/.config/turnout/profiles.toml (or TURNOUT_PROFILE).")
@click.option("--timeout", type=click.FloatRange(min=0.1), help="Seconds to wait for each answer (default 30).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON: for scripts.")
@click.version_option(package_name="turnout-client", prog_name="turnout")
@click.pass_context
def cli(
    ctx: click.Context, url: str | None, api_key: str | None, profile: str | None, timeout: float | None, as_json: bool
) -> None:
    """Turnout's management and inference APIs from the command line.

    Configure with TURNOUT_URL and TURNOUT_API_KEY (a key with the manage action),
    or a profile file. Exit statuses: 0 ok, 2 usage, 3 refused, 4 not found or not
    allowed, 5 rollout not promoted, 6 timed out, 7 server unreachable, 8 job failed.
    """
    ctx.meta["turnout.json"] = as_json
    ctx.meta["turnout.options"] = {"url": url, "api_key": api_key, "profile": profile, "timeout": timeout}


for _module in (registry, rollouts, keys, infer):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli.main(prog_name="turnout")
