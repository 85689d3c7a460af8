"""`turnout models`, `versions`, `aliases` and `pipelines`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from turnout_client.cli.context import client
from turnout_client.cli.output import emit, fields, json_mode, note, table

VERSION_FIELDS = [
    *("model", "number", "status", "status_reason", "sha256", "size_bytes", "opset", "signature", "aliases"),
    *("created_by", "created_at", "max_batch_size", "max_queue_delay_ms", "preferred_batch_sizes", "max_queue_size"),
    *("default_timeout_ms", "execution_provider", "warmup", "cache_ttl_seconds", "intra_op_threads", "workers"),
]
VERSION_COLUMNS = ["number", "status", "aliases", "size_bytes", "created_by", "created_at", "status_reason"]


def parse_assignments(pairs: tuple[str, ...], what: str = "setting") -> dict[str, Any]:
    """`name=value` pairs; each value is read as JSON when it is JSON (32, 2.5, true, [8,16], null), else text."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.UsageError(f"{what} {pair!r} is not NAME=VALUE, e.g. max_batch_size=32")
        try:
            settings[name] = json.loads(raw)
        except ValueError:
            settings[name] = raw
    return settings


def read_json(source: str) -> Any:
    """A JSON document from a file, or from stdin for '-'."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"{source} is not JSON: {exc}") from None


# --- models ---------------------------------------------------------------------------------------------------------


@click.group()
def models() -> None:
    """Registered models and pipelines."""


@models.command("list")
@click.option("--q", "query", help="Search name, description and tags.")
@click.option("--tag", help="Only models with this tag.")
@click.option("--kind", type=click.Choice(["model", "pipeline"]))
def models_list(query: str | None, tag: str | None, kind: str | None) -> None:
    """List models."""
    found = client().models(q=query, tag=tag, kind=kind)
    emit(found, lambda rows: table(rows, ["name", "kind", "aliases", "latest_version", "owner", "description"]))


@models.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(["model", "pipeline"]), default="model", show_default=True)
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
def models_create(name: str, kind: str, description: str, tags: tuple[str, ...]) -> None:
    """Create a model (you become its owner)."""
    made = client().create_model(name, kind=kind, description=description, tags=list(tags))
    emit(made, lambda m: click.echo(f"created {m['kind']} {m['name']}"))


@models.command("show")
@click.argument("name")
def models_show(name: str) -> None:
    """A model: owner, maintainers, aliases, latest version, fallback."""
    found = client().model(name)
    emit(
        found,
        lambda m: fields(
            m,
            [
                "name",
                "kind",
                "description",
                "tags",
                "owner",
                "maintainers",
                "aliases",
                "latest_version",
                "fallback",
                "created_at",
            ],
        ),
    )


@models.command("fallback")
@click.argument("name")
@click.argument("chain_file", required=False)
@click.option("--clear", is_flag=True, help="Remove the model's fallback chain.")
def models_fallback(name: str, chain_file: str | None, clear: bool) -> None:
    """Set the fallback chain from CHAIN_FILE (JSON: on, chain, reserve_ms; '-' reads stdin), or --clear it."""
    if clear == bool(chain_file):
        raise click.UsageError("give a CHAIN_FILE or --clear (one of them)")
    changed = client().update_model(name, fallback=None if clear else read_json(str(chain_file)))
    emit(changed, lambda m: click.echo(f"{m['name']}: fallback {'removed' if clear else 'set'}"))


# --- versions -------------------------------------------------------------------------------------------------------


@click.group()
def versions() -> None:
    """A model's versions: upload, wait, settings, archive, quantize, compare, capacity."""


def _show_version(version: dict[str, Any]) -> None:
    fields(version, VERSION_FIELDS)
    log = (version.get("validation") or {}).get("log")
    if version.get("status") == "failed" and log:
        click.echo("validation log (last lines):")
        for line in log.strip().splitlines()[-8:]:
            click.echo(f"  {line}")


@versions.command("list")
@click.argument("model")
def versions_list(model: str) -> None:
    """A model's versions, newest first."""
    emit(client().versions(model), lambda rows: table(rows, VERSION_COLUMNS))


@versions.command("show")
@click.argument("model")
@click.argument("number", type=int)
def versions_show(model: str, number: int) -> None:
    """A version: status (and why it failed), signature, serving settings, workers."""
    emit(client().version(model, number), _show_version)


def _wait(model: str, number: int, timeout: float) -> dict[str, Any]:
    def changed(version: dict[str, Any]) -> None:
        note(f"{model} v{number}: {version['status']}")

    return client().wait_for_version(model, number, timeout=timeout, on_change=changed)


@versions.command("upload")
@click.argument("model")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--description", help="What changed in this version.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option("--metadata", help='JSON object, e.g. \'{"git_sha": "abc123"}\'.')
@click.option("--parent", type=int, help="The version this one was derived from.")
@click.option("--source-run-url", help="The training run (an MLflow run URL, a CI job).")
@click.option("--training-data", help="Which data it was trained on.")
@click.option(
    "--set", "settings", multiple=True, metavar="NAME=VALUE", help="A serving setting, e.g. max_batch_size=32."
)
@click.option("--wait/--no-wait", default=False, help="Wait until validation ends; exit 8 if it fails.")
@click.option("--wait-timeout", type=float, default=600, show_default=True, help="Seconds --wait waits.")
def versions_upload(
    model: str,
    file: Path,
    description: str | None,
    tags: tuple[str, ...],
    metadata: str | None,
    parent: int | None,
    source_run_url: str | None,
    training_data: str | None,
    settings: tuple[str, ...],
    wait: bool,
    wait_timeout: float,
) -> None:
    """Upload FILE (ONNX) as a new version of MODEL, with a progress bar."""
    extra: dict[str, Any] = parse_assignments(settings)
    if metadata is not None:
        try:
            extra["metadata"] = json.loads(metadata)
        except ValueError as exc:
            raise click.UsageError(f"--metadata is not JSON: {exc}") from None
    for name, value in (
        ("description", description),
        ("parent", parent),
        ("source_run_url", source_run_url),
        ("training_data", training_data),
    ):
        if value is not None:
            extra[name] = value
    if tags:
        extra["tags"] = list(tags)
    size = file.stat().st_size
    show_bar = not json_mode() and sys.stderr.isatty()
    with click.progressbar(length=size, label=f"uploading {file.name}", file=sys.stderr, hidden=not show_bar) as bar:
        version = client().upload_version(model, file, progress=bar.update, **extra)
    if version.get("duplicate"):
        note(version.get("detail") or f"{model} already has these bytes as version {version['number']}")
    else:
        note(f"uploaded {file.name} ({size} bytes) as {model} v{version['number']}: {version['status']}")
    if wait:
        version = _wait(model, version["number"], wait_timeout)
    emit(version, lambda v: click.echo(f"{model} v{v['number']} {v['status']}"))


@versions.command("wait")
@click.argument("model")
@click.argument("number", type=int)
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait; then exit 6.")
def versions_wait(model: str, number: int, timeout: float) -> None:
    """Wait until a version is ready (exit 0) or failed (exit 8, printing why)."""
    emit(_wait(model, number, timeout), lambda v: click.echo(f"{model} v{v['number']} ready"))


@versions.command("set")
@click.argument("model")
@click.argument("number", type=int)
@click.argument("settings", nargs=-1, required=True, metavar="NAME=VALUE...")
def versions_set(model: str, number: int, settings: tuple[str, ...]) -> None:
    """Change serving settings and metadata, e.g. max_batch_size=32 preferred_batch_sizes=[8,16] warmup=false."""
    changed = client().update_version(model, number, **parse_assignments(settings))
    emit(changed, _show_version)


@versions.command("cache-ttl")
@click.argument("model")
@click.argument("number", type=int)
@click.argument("seconds", type=click.IntRange(min=0))
def versions_cache_ttl(model: str, number: int, seconds: int) -> None:
    """Turn the response cache on for SECONDS (0 turns it off). Only for deterministic models."""
    changed = client().update_version(model, number, cache_ttl_seconds=seconds)
    emit(changed, lambda v: click.echo(f"{model} v{number}: cache_ttl_seconds={v['cache_ttl_seconds']}"))


def _version_verb(verb: str, summary: str) -> click.Command:
    @click.command(verb, help=summary)
    @click.argument("model")
    @click.argument("number", type=int)
    def command(model: str, number: int) -> None:
        answer = client().version_action(model, number, verb)
        emit(answer, lambda a: click.echo(a.get("detail") or f"{model} v{number}: {a.get('status', verb)}"))

    return command


for _verb, _summary in (
    ("archive", "Retire a version: workers stop serving it; artifact and audit trail stay."),
    ("restore", "Undo an archive."),
    ("load", "Every live worker serving the version loads and warms it up now."),
    ("unload", "Every live worker frees its session of the version."),
):
    versions.add_command(_version_verb(_verb, _summary))


def _job(model: str, number: int, kind: str, job: dict[str, Any], wait: bool, timeout: float) -> dict[str, Any]:
    note(f"{kind} {job['id']} of {model} v{number}: {job['status']}")
    if not wait:
        return job
    return client().wait_for_job(model, number, kind, job["id"], timeout=timeout)


@versions.command("quantize")
@click.argument("model")
@click.argument("number", type=int)
@click.option("--method", type=click.Choice(["int8_dynamic", "fp16"]), required=True)
@click.option("--wait/--no-wait", default=False, help="Wait until it ends; exit 8 if it fails.")
@click.option("--wait-timeout", type=float, default=1800, show_default=True)
def versions_quantize(model: str, number: int, method: str, wait: bool, wait_timeout: float) -> None:
    """Quantize a ready version into a new version (validated like an upload)."""
    job = client().version_action(model, number, "quantize", {"method": method})
    job = _job(model, number, "quantizations", job, wait, wait_timeout)
    emit(job, lambda j: click.echo(f"quantization {j['id']}: {j['status']} -> version {j.get('result_version')}"))


@versions.command("compare")
@click.argument("model")
@click.argument("number", type=int)
@click.option("--baseline", type=int, help="The version to compare with (default: its parent).")
@click.option("--rows", type=click.IntRange(1, 4096), help="Sample rows (default 256).")
@click.option("--wait/--no-wait", default=False)
@click.option("--wait-timeout", type=float, default=900, show_default=True)
def versions_compare(
    model: str, number: int, baseline: int | None, rows: int | None, wait: bool, wait_timeout: float
) -> None:
    """Compare a variant with its parent (agreement, size, speed)."""
    body = {k: v for k, v in (("baseline", baseline), ("rows", rows)) if v is not None}
    job = _job(
        model, number, "comparisons", client().version_action(model, number, "compare", body), wait, wait_timeout
    )
    emit(
        job,
        lambda j: click.echo(
            f"comparison {j['id']}: {j['status']} agreement={(j.get('result') or {}).get('agreement')}"
        ),
    )


@versions.command("capacity")
@click.argument("model")
@click.argument("number", type=int)
@click.option("--p99-target-ms", type=float, required=True)
@click.option("--wait/--no-wait", default=False)
@click.option("--apply", "apply_it", is_flag=True, help="With --wait: set the recommended batch settings.")
@click.option("--wait-timeout", type=float, default=1800, show_default=True)
def versions_capacity(
    model: str, number: int, p99_target_ms: float, wait: bool, apply_it: bool, wait_timeout: float
) -> None:
    """Measure the version under load and recommend batch settings that meet a p99 target."""
    if apply_it and not wait:
        raise click.UsageError("--apply needs --wait")
    job = client().version_action(model, number, "capacity", {"p99_target_ms": p99_target_ms})
    job = _job(model, number, "capacity-reports", job, wait, wait_timeout)
    if apply_it:
        client().apply_capacity(model, number, job["id"])
        note(f"applied capacity report {job['id']} to {model} v{number}")
    emit(
        job,
        lambda j: click.echo(
            f"capacity report {j['id']}: {j['status']} {(j.get('result') or {}).get('recommendation')}"
        ),
    )


@versions.command("jobs")
@click.argument("model")
@click.argument("number", type=int)
@click.argument("kind", type=click.Choice(["quantizations", "comparisons", "capacity-reports"]))
def versions_jobs(model: str, number: int, kind: str) -> None:
    """A version's quantizations, comparisons or capacity reports, newest first."""
    emit(client().version_jobs(model, number, kind), lambda rows: table(rows, ["id", "status", "created_at", "reason"]))


# --- aliases and pipelines ------------------------------------------------------------------------------------------


@click.group()
def aliases() -> None:
    """Aliases: names (production, staging...) that point at a version."""


@aliases.command("list")
@click.argument("model")
def aliases_list(model: str) -> None:
    emit(client().aliases(model), lambda rows: table(rows, ["name", "version", "updated_at"]))


@aliases.command("set")
@click.argument("model")
@click.argument("alias")
@click.argument("version", type=int)
def aliases_set(model: str, alias: str, version: int) -> None:
    """Point ALIAS at VERSION (a ready one). Moving production changes what clients get within a second."""
    moved = client().set_alias(model, alias, version)
    emit(moved, lambda a: click.echo(f"{model}: {a['name']} -> v{a['version']}"))


@aliases.command("delete")
@click.argument("model")
@click.argument("alias")
def aliases_delete(model: str, alias: str) -> None:
    client().delete_alias(model, alias)
    emit({"deleted": alias}, lambda _: click.echo(f"{model}: alias {alias} deleted"))


@click.group()
def pipelines() -> None:
    """Pipelines: versions made of stages (preprocess -> model -> postprocess)."""


@pipelines.command("create-version")
@click.argument("pipeline")
@click.argument("spec_file")
@click.option("--wait/--no-wait", default=False)
@click.option("--wait-timeout", type=float, default=600, show_default=True)
def pipelines_create_version(pipeline: str, spec_file: str, wait: bool, wait_timeout: float) -> None:
    """A new pipeline version from SPEC_FILE (JSON with `stages`, optional `outputs`; '-' reads stdin)."""
    version = client().create_pipeline_version(pipeline, read_json(spec_file))
    note(f"{pipeline} v{version['number']}: {version['status']}")
    if wait:
        version = _wait(pipeline, version["number"], wait_timeout)
    emit(version, lambda v: click.echo(f"{pipeline} v{v['number']} {v['status']}"))


COMMANDS = [models, versions, aliases, pipelines]
