"""`turnout infer`: one V2 inference request from a JSON file or .npy arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from turnout_client.cli.context import client
from turnout_client.cli.output import dumps, emit
from turnout_client.cli.registry import read_json


def _npy_inputs(pairs: tuple[str, ...]) -> dict[str, Any]:
    try:
        import numpy as np
    except ImportError:
        raise click.UsageError("--npy needs numpy: pip install 'turnout-client[numpy]'") from None
    inputs = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--npy {pair!r} is not INPUT=FILE.npy")
        inputs[name] = np.load(Path(path), allow_pickle=False)
    return inputs


def _human(answer: dict[str, Any]) -> None:
    headers = answer.get("headers", {})
    click.echo(
        f"{answer.get('model_name')} v{answer.get('model_version')} "
        f"arm={headers.get('x-turnout-arm', (answer.get('parameters') or {}).get('arm'))}"
    )
    for output in answer.get("outputs", []):
        data = output.get("data")
        shown = data.tolist() if hasattr(data, "tolist") else data
        click.echo(f"{output['name']} {output['datatype']} {output['shape']}: {dumps(shown).replace(chr(10), '')}")


@click.command("infer")
@click.argument("model")
@click.option("--version", type=int, help="A version number (default: what the model serves).")
@click.option("--input-file", "input_file", help="A V2 request body (JSON, with `inputs`); '-' reads stdin.")
@click.option("--npy", "npy", multiple=True, metavar="INPUT=FILE.npy", help="An input from a .npy file (repeat).")
@click.option("--output", "outputs", multiple=True, help="Only this output (repeat).")
@click.option("--binary", is_flag=True, help="Send and receive tensors as raw bytes (binary data extension; numpy).")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Extra header, e.g. x-routing-key:u1.")
def infer(
    model: str,
    version: int | None,
    input_file: str | None,
    npy: tuple[str, ...],
    outputs: tuple[str, ...],
    binary: bool,
    headers: tuple[str, ...],
) -> None:
    """Run MODEL on inputs from --input-file (V2 JSON) or --npy files; prints the outputs."""
    if bool(input_file) == bool(npy):
        raise click.UsageError("give --input-file or --npy (one of them)")
    extra = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise click.UsageError(f"--header {header!r} is not NAME:VALUE")
        extra[name.strip()] = value.strip()
    request_id, parameters = None, None
    if input_file:
        body = read_json(input_file)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise click.UsageError(f"{input_file}: a V2 request is an object with an `inputs` list")
        inputs: dict[str, Any] = {}
        for entry in body["inputs"]:
            if not isinstance(entry, dict) or "name" not in entry:
                raise click.UsageError(f"{input_file}: every input needs a `name`")
            inputs[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
        request_id = body.get("id")
        parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else None
        outputs = outputs or tuple(o["name"] for o in body.get("outputs", []) if isinstance(o, dict) and "name" in o)
    else:
        inputs = _npy_inputs(npy)
    answer = client().infer(
        model,
        inputs,
        version=version,
        outputs=list(outputs) or None,
        binary=binary,
        headers=extra,
        request_id=request_id,
        parameters=parameters,
    )
    emit(answer, _human)


COMMANDS = [infer]
