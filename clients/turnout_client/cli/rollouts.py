"""`turnout rollouts`: start canaries, experiments and shadows, watch them, steer them."""

from __future__ import annotations

import sys
from typing import Any

import click

from turnout_client.cli.context import client
from turnout_client.cli.output import cell, dumps, emit, json_mode, table
from turnout_client.cli.registry import parse_assignments

LIST_COLUMNS = ["id", "model", "kind", "status", "step", "arms", "created_by", "started_at"]


def _arms(rollout: dict[str, Any]) -> str:
    return " ".join(f"{a['name']}:v{a['version']}@{a['weight']:g}%" for a in rollout.get("arms", []))


def render(rollout: dict[str, Any]) -> list[str]:
    """What `show` and `watch` print: the state, the arms' figures, the gates, the outcome."""
    lines = [
        f"rollout {rollout['id']}  {rollout['kind']} of {rollout['model']}  status={rollout['status']}  "
        f"step={rollout.get('step')}  arms: {_arms(rollout)}"
    ]
    report = rollout.get("report") or {}
    arms = report.get("arms") or []
    if arms:
        lines.append(
            f"  {'arm':<12}{'version':>8}{'weight':>8}{'requests':>10}{'err rate':>10}{'p50 ms':>9}{'p95 ms':>9}"
        )
        for arm in arms:
            f = arm.get("figures") or {}
            lines.append(
                f"  {arm['name']:<12}{arm['version']:>8}{arm['weight']:>7.4g}%{f.get('requests', 0):>10}"
                f"{cell(f.get('error_rate')):>10}{cell(f.get('p50')):>9}{cell(f.get('p95')):>9}"
            )
    analysis = report.get("analysis") or rollout.get("last_analysis")
    if analysis:
        lines.append(f"  analysis: next action {analysis['action']}")
        for gate in analysis.get("gates", []):
            verdict = {True: "pass", False: "FAIL", None: "wait"}[gate.get("passed")]
            lines.append(
                f"    {gate['name']:<22}{verdict:<6}value={cell(gate.get('value'))} limit={cell(gate.get('threshold'))}"
            )
    agreement = report.get("agreement")
    if agreement:
        lines.append(f"  shadow: copies={agreement['copies']} agreement={cell(agreement.get('agreement'))}")
    if rollout.get("outcome"):
        lines.append(f"  outcome: {cell({k: v for k, v in rollout['outcome'].items() if k != 'figures'})}")
    return lines


@click.group()
def rollouts() -> None:
    """Canaries, experiments and shadows."""


@rollouts.command("list")
@click.option("--model")
@click.option("--status", help="running, paused, promoted, rolled_back, aborted, stopped or active.")
@click.option("--kind", type=click.Choice(["canary", "experiment", "shadow"]))
def rollouts_list(model: str | None, status: str | None, kind: str | None) -> None:
    found = client().rollouts(model=model, status=status, kind=kind)
    emit(found, lambda rows: table([{**r, "arms": _arms(r)} for r in rows], LIST_COLUMNS))


@rollouts.command("show")
@click.argument("rollout_id", type=int)
def rollouts_show(rollout_id: int) -> None:
    """A rollout with its live figures and gates."""
    emit(client().rollout(rollout_id), lambda r: click.echo("\n".join(render(r))))


@rollouts.group("start")
def start() -> None:
    """Start a canary, an experiment or a shadow (a model has at most one active rollout)."""


def _started(rollout: dict[str, Any]) -> None:
    click.echo(f"started {rollout['kind']} {rollout['id']} of {rollout['model']}: {_arms(rollout)}")


def _steps(raw: str | None) -> list[float] | None:
    if raw is None:
        return None
    try:
        return [float(s) for s in raw.split(",") if s.strip()]
    except ValueError:
        raise click.UsageError(
            f"--steps must be percentages separated by commas, e.g. 5,25,50,100; not {raw!r}"
        ) from None


@start.command("canary")
@click.argument("model")
@click.argument("version", type=int)
@click.option("--steps", help="Percentages ending at 100, e.g. 5,25,50,100 (the default).")
@click.option("--step-seconds", type=click.IntRange(min=1), help="Least time per step (default 600).")
@click.option("--analysis-interval", type=click.IntRange(min=1), help="Seconds between analyses (default 60).")
@click.option(
    "--gate",
    "gates",
    multiple=True,
    metavar="NAME=VALUE",
    help="min_requests, max_error_rate_increase, max_p95_ratio, min_reward_ratio; null turns one off.",
)
@click.option("--routing-header", help="Header that pins a client to an arm (default x-routing-key).")
def start_canary(
    model: str,
    version: int,
    steps: str | None,
    step_seconds: int | None,
    analysis_interval: int | None,
    gates: tuple[str, ...],
    routing_header: str | None,
) -> None:
    """Canary VERSION of MODEL against production, advancing through the steps while its gates pass."""
    body: dict[str, Any] = {"kind": "canary", "model": model, "version": version}
    for name, value in (
        ("steps", _steps(steps)),
        ("step_seconds", step_seconds),
        ("analysis_interval_seconds", analysis_interval),
        ("routing_header", routing_header),
    ):
        if value is not None:
            body[name] = value
    if gates:
        body["gates"] = parse_assignments(gates, "gate")
    emit(client().start_rollout(body), _started)


@start.command("experiment")
@click.argument("model")
@click.option(
    "--arm",
    "arms",
    multiple=True,
    required=True,
    metavar="NAME=VERSION[:WEIGHT]",
    help="An arm, e.g. a=3:50 (repeat; at least two).",
)
@click.option("--control", help="The control arm's name (default: the first).")
@click.option("--metric", type=click.Choice(["binary", "numeric"]), default="binary", show_default=True)
@click.option("--minimum-effect", type=float, help="Smallest difference worth detecting.")
@click.option("--alpha", type=float, help="Significance level (default 0.05).")
@click.option("--routing-header")
def start_experiment(
    model: str,
    arms: tuple[str, ...],
    control: str | None,
    metric: str,
    minimum_effect: float | None,
    alpha: float | None,
    routing_header: str | None,
) -> None:
    """An A/B experiment between versions, sticky per routing key, judged on feedback rewards."""
    parsed = []
    for arm in arms:
        name, sep, rest = arm.partition("=")
        number, _, weight = rest.partition(":")
        try:
            parsed.append({"name": name, "version": int(number), "weight": float(weight or 1)})
        except ValueError:
            raise click.UsageError(f"--arm {arm!r} is not NAME=VERSION[:WEIGHT], e.g. b=4:50") from None
        if not sep or not name:
            raise click.UsageError(f"--arm {arm!r} is not NAME=VERSION[:WEIGHT], e.g. b=4:50")
    body: dict[str, Any] = {"kind": "experiment", "model": model, "arms": parsed, "metric": metric}
    for name, value in (
        ("control", control),
        ("minimum_effect", minimum_effect),
        ("alpha", alpha),
        ("routing_header", routing_header),
    ):
        if value is not None:
            body[name] = value
    emit(client().start_rollout(body), _started)


@start.command("shadow")
@click.argument("model")
@click.argument("version", type=int)
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), help="Share of requests copied (default 1).")
def start_shadow(model: str, version: int, fraction: float | None) -> None:
    """Copy production's traffic to VERSION, recording agreement; clients never see its answers."""
    body: dict[str, Any] = {"kind": "shadow", "model": model, "version": version}
    if fraction is not None:
        body["fraction"] = fraction
    emit(client().start_rollout(body), _started)


@rollouts.command("watch")
@click.argument("rollout_id", type=int)
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between reads."
)
@click.option("--timeout", type=float, default=3600, show_default=True, help="Seconds to watch; then exit 6.")
def rollouts_watch(rollout_id: int, interval: float, timeout: float) -> None:
    """Follow a rollout live until it ends: exit 0 when promoted, 5 when rolled back, aborted or stopped.

    On a terminal the figures are redrawn in place; otherwise (CI logs) a line is
    printed whenever the status, step or next action changes. --json prints one JSON
    object per read (JSON lines).
    """
    live = sys.stdout.isatty() and not json_mode()
    drawn = 0
    last_key: tuple[Any, ...] | None = None

    def update(rollout: dict[str, Any]) -> None:
        nonlocal drawn, last_key
        if json_mode():
            click.echo(dumps(rollout).replace("\n", ""))
            return
        lines = render(rollout)
        if live:
            if drawn:
                click.echo(f"\x1b[{drawn}F\x1b[J", nl=False)  # back to the first line drawn, clear below
            click.echo("\n".join(lines))
            drawn = len(lines)
            return
        analysis = (rollout.get("report") or {}).get("analysis") or {}
        key = (rollout["status"], rollout.get("step"), analysis.get("action"), _arms(rollout))
        if key != last_key:
            click.echo("\n".join(lines))
            last_key = key

    final = client().watch_rollout(rollout_id, timeout=timeout, interval=interval, on_update=update)
    if not json_mode():
        click.echo(f"rollout {rollout_id} promoted: {final['model']} production is v{final['outcome'].get('version')}")


def _verb(verb: str, summary: str, with_reason: bool = False, with_arm: bool = False) -> click.Command:
    @click.command(verb, help=summary)
    @click.argument("rollout_id", type=int)
    @click.option("--reason", hidden=not with_reason, help="Why (kept in the outcome).")
    @click.option("--arm", hidden=not with_arm, help="The experiment arm to promote.")
    def command(rollout_id: int, reason: str | None, arm: str | None) -> None:
        body = {k: v for k, v in (("reason", reason), ("arm", arm)) if v is not None}
        done = client().rollout_action(rollout_id, verb, body)
        emit(done, lambda r: click.echo(f"rollout {r['id']}: {r['status']}"))

    return command


for _args in (
    ("pause", "Hold the split as it is; a canary stops advancing."),
    ("resume", "A paused canary's step starts its clock again."),
    (
        "promote",
        "Move production to the canary's or shadow's version (or --arm of an experiment); end it.",
        False,
        True,
    ),
    ("abort", "All traffic back to the champion; production does not move.", True),
    ("stop", "End an experiment or a shadow without promoting."),
):
    rollouts.add_command(_verb(*_args))


@rollouts.command("analysis")
@click.argument("rollout_id", type=int)
def rollouts_analysis(rollout_id: int) -> None:
    """A canary's gates now and what the next analysis would do (changes nothing)."""
    found = client().rollout_analysis(rollout_id)
    emit(
        found,
        lambda a: click.echo(
            "\n".join(
                render({"id": rollout_id, "kind": "canary", "model": "", "status": "", "report": {"analysis": a}})
            )
        ),
    )


COMMANDS = [rollouts]
