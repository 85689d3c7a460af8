"""The report: the goals a run is held to (bars), the rows of its tables (the main one, gRPC beside
HTTP, where the time goes), their text and markdown forms, the machine and code revision it names,
and write_report, which prints it and writes bench/out/latest.md and latest.json."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from results import CONCURRENCIES, OUT, ROOT, Cell, ModelResult
from stack import OtlpSink

# --- gRPC beside HTTP ------------------------------------------------------------
GRPC_TITLE = (
    "gRPC (h2load, raw_input_contents; c64: 8 connections of 8 streams) beside HTTP JSON (wrk), batching on, "
    "same run; the last row: each transport with no gateway work (GET /v2/health/live, ServerLive):"
)


def grpc_rows(results: dict[str, ModelResult], floors: dict[str, Cell]) -> tuple[list[str], list[list[str]]]:
    """gRPC (h2load) beside HTTP JSON (wrk), batching on, the same run: batch-1 latency at c1,
    throughput at c64; then each transport alone (HTTP `GET /v2/health/live`, gRPC ServerLive)."""
    header = ["model", "HTTP c1 p50 ms", "gRPC c1 p50 ms", "HTTP c64 req/s", "gRPC c64 req/s", "gRPC/HTTP c64"]
    rows = []
    for key, result in results.items():
        http1, grpc1 = result.cell("on", 1), result.cell("grpc", 1)
        http64, grpc64 = result.cell("on", 64), result.cell("grpc", 64)
        if grpc1 is None or grpc64 is None:
            continue
        ratio = grpc64.rps / http64.rps if http64 is not None and http64.rps else None
        rows.append(
            [
                key,
                fmt(http1.p50_ms if http1 else None, 3),
                fmt(grpc1.p50_ms, 3),
                fmt(http64.rps if http64 else None, 0),
                fmt(grpc64.rps, 0),
                fmt(ratio, 2),
            ]
        )
    http_floor, grpc_floor = floors.get("http"), floors.get("grpc")
    if rows and http_floor is not None and grpc_floor is not None:
        rows.append(
            [
                "transport alone (live)",
                "",
                "",
                fmt(http_floor.rps, 0),
                fmt(grpc_floor.rps, 0),
                fmt(grpc_floor.rps / http_floor.rps if http_floor.rps else None, 2),
            ]
        )
    return header, rows


# --- the table ----------------------------------------------------------------------
@dataclass
class Bar:
    model: str
    text: str
    ok: bool | None  # None: not measured


def bars(results: dict[str, ModelResult]) -> list[Bar]:
    out: list[Bar] = []
    large = results.get("mlp_large")
    if large is not None:
        on64, on1, off1 = large.cell("on", 64), large.cell("on", 1), large.cell("off", 1)
        binary64 = large.cell("binary", 64)
        for share in (0.35, 0.30):  # an earlier issue's bar, and the hot-path issue's
            out.append(
                Bar(
                    "mlp_large",
                    f"c64 req/s >= {share:.2f} x raw b64 samples/s",
                    None if on64 is None else on64.rps >= share * large.raw.b64_sps,
                )
            )
        out.append(
            Bar(
                "mlp_large",
                "binary c64 >= 1.5 x JSON c64",
                None if on64 is None or binary64 is None else binary64.rps >= 1.5 * on64.rps,
            )
        )
        out.append(Bar("mlp_large", "c64 p99 < 100 ms", None if on64 is None else on64.p99_ms < 100))
        out.append(
            Bar(
                "mlp_large",
                "c1 p50 <= raw b1 p50 + 1.5 ms",
                None if on1 is None else on1.p50_ms <= large.raw.b1_p50_ms + 1.5,
            )
        )
        out.append(
            Bar(
                "mlp_large",
                "c1 p50 batching on <= 1.10 x batching off",
                None if on1 is None or off1 is None else on1.p50_ms <= 1.10 * off1.p50_ms,
            )
        )
    small = results.get("mlp_small")
    if small is not None:
        on64, on1 = small.cell("on", 64), small.cell("on", 1)
        out.append(Bar("mlp_small", "c64 >= 3,000 req/s", None if on64 is None else on64.rps >= 3000))
        out.append(Bar("mlp_small", "c1 p50 <= 1 ms", None if on1 is None else on1.p50_ms <= 1.0))
    # The hot-path goals against the per-request server measured in the same run.
    for key, slack_ms in (("mlp_small", 0.2), ("mlp_large", 0.5)):
        result = results.get(key)
        if result is None:
            continue
        on64, on1 = result.cell("on", 64), result.cell("on", 1)
        theirs64, theirs1 = result.baseline.get(64), result.baseline.get(1)
        out.append(
            Bar(
                key,
                "c64 req/s >= 2 x per-request c64",
                None if on64 is None or theirs64 is None else on64.rps >= 2 * theirs64.rps,
            )
        )
        out.append(
            Bar(
                key,
                f"c1 p50 <= per-request c1 p50 + {slack_ms} ms",
                None if on1 is None or theirs1 is None else on1.p50_ms <= theirs1.p50_ms + slack_ms,
            )
        )
    return out


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table_rows(results: dict[str, ModelResult]) -> tuple[list[str], list[list[str]]]:
    keys = list(results)
    header = ["", *keys]
    rows: list[list[str]] = []

    def row(label: str, getter: Any) -> None:
        rows.append([label, *[getter(results[k]) for k in keys]])

    row("raw b1 samples/s", lambda r: fmt(r.raw.b1_sps))
    row("raw b64 samples/s", lambda r: fmt(r.raw.b64_sps))
    row("raw b1 p50 ms", lambda r: fmt(r.raw.b1_p50_ms, 3))
    row("raw b64 samples/s, 1 intra-op thread", lambda r: fmt(r.raw.b64_sps_1thread))
    for mode, title in (("on", "batching on"), ("off", "batching off")):
        for conc in CONCURRENCIES:

            def cell_value(r: ModelResult, attr: str, mode: str = mode, conc: int = conc) -> str:
                cell = r.cell(mode, conc)
                return fmt(None if cell is None else getattr(cell, attr), 3 if attr != "rps" else 1)

            row(f"{title} c{conc} req/s", lambda r, f=cell_value: f(r, "rps"))
            row(f"{title} c{conc} p50 ms", lambda r, f=cell_value: f(r, "p50_ms"))
            row(f"{title} c{conc} p99 ms", lambda r, f=cell_value: f(r, "p99_ms"))

    def ratio_c64(r: ModelResult, mode: str) -> str:
        cell = r.cell(mode, 64)
        return "-" if cell is None else f"{cell.rps / r.raw.b64_sps:.2f}"

    def c1_over_raw(r: ModelResult) -> str:
        cell = r.cell("on", 1)
        return "-" if cell is None else f"{cell.p50_ms - r.raw.b1_p50_ms:+.3f}"

    def on_over_off(r: ModelResult) -> str:
        on, off = r.cell("on", 1), r.cell("off", 1)
        return "-" if on is None or off is None else f"{on.p50_ms / off.p50_ms:.2f}"

    row("c64 req/s / raw b64 (on)", lambda r: ratio_c64(r, "on"))
    row("c64 req/s / raw b64 (off)", lambda r: ratio_c64(r, "off"))

    def ratio_single(r: ModelResult) -> str:
        cell = r.cell("on", 64)
        return "-" if cell is None or not r.raw.b64_sps_1thread else f"{cell.rps / r.raw.b64_sps_1thread:.2f}"

    row("c64 req/s / raw b64 1-thread (on)", ratio_single)

    def binary(r: ModelResult) -> str:
        cell = r.cell("binary", 64)
        return fmt(None if cell is None else cell.rps, 1)

    def binary_over_json(r: ModelResult) -> str:
        ours, json_cell = r.cell("binary", 64), r.cell("on", 64)
        return "-" if ours is None or json_cell is None else f"{ours.rps / json_cell.rps:.2f}"

    row("binary extension c64 req/s (on)", binary)
    row("binary c64 / JSON c64 (on)", binary_over_json)
    row("c1 p50 - raw b1 p50 ms (on)", c1_over_raw)

    for label, attr in (("per-request", "baseline"), ("lean per-request", "lean")):

        def peer(r: ModelResult, conc: int, field: str, attr: str = attr) -> str:
            cell = getattr(r, attr).get(conc)
            return fmt(None if cell is None else getattr(cell, field), 3 if field != "rps" else 1)

        def over_peer(r: ModelResult, attr: str = attr) -> str:
            ours, theirs = r.cell("on", 64), getattr(r, attr).get(64)
            return "-" if ours is None or theirs is None else f"{ours.rps / theirs.rps:.2f}"

        def c1_minus_peer(r: ModelResult, attr: str = attr) -> str:
            ours, theirs = r.cell("on", 1), getattr(r, attr).get(1)
            return "-" if ours is None or theirs is None else f"{ours.p50_ms - theirs.p50_ms:+.3f}"

        row(f"{label} c64 req/s", lambda r, f=peer: f(r, 64, "rps"))
        row(f"{label} c1 p50 ms", lambda r, f=peer: f(r, 1, "p50_ms"))
        row(f"c64 req/s / {label} c64 (on)", over_peer)
        row(f"c1 p50 - {label} c1 p50 ms (on)", c1_minus_peer)
    row("c1 p50 on / off", on_over_off)
    row("execution provider", lambda r: r.provider or "-")
    for bar in bars(results):
        mark = "-" if bar.ok is None else ("PASS" if bar.ok else "MISS")
        rows.append([f"bar: {bar.text}", *[mark if k == bar.model else "" for k in keys]])
    return header, rows


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, line in enumerate([header, *rows]):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in rows]
    return "\n".join(lines)


def detail_rows(results: dict[str, ModelResult]) -> tuple[list[str], list[list[str]]]:
    """Per cell: where a request's time goes (means) and who used the CPU."""
    roles: list[str] = []
    for result in results.values():
        for cell in result.cells.values():
            roles += [r for r in cell.cpu if r not in roles]
    stage_columns = [
        ("validation_ms", "validate ms"),
        ("queue_ms", "queue ms"),
        ("compute_ms", "compute ms"),
        ("total_ms", "gateway ms"),
        ("rows_per_run", "rows/run"),
        ("runs_per_s", "runs/s"),
    ]
    header = ["cell", "mean ms", *[title for _, title in stage_columns], *[f"{r} %" for r in roles]]
    rows = []
    for key, result in results.items():
        for (mode, conc), cell in result.cells.items():
            stages = [fmt(cell.stages.get(name), 3 if name.endswith("_ms") else 1) for name, _ in stage_columns]
            cpu = [f"{cell.cpu.get(r, 0):.0f}" for r in roles]
            rows.append([f"{key} batching {mode} c{conc}", fmt(cell.mean_ms, 3), *stages, *cpu])
    return header, rows


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)  # noqa: S607
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)  # noqa: S607
    except OSError:
        return "unknown"
    revision = head.stdout.strip() or "unknown"
    return revision + (" with uncommitted changes" if dirty.stdout.strip() else "")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def write_report(
    args: argparse.Namespace,
    results: dict[str, ModelResult],
    floors: dict[str, Cell],
    url: str,
    sink: OtlpSink | None,
    own_stack: bool,
    started: datetime,
) -> None:
    """Print the tables and write them as markdown to bench/out/latest.md, the figures to latest.json."""
    header, rows = table_rows(results)
    import onnxruntime

    if args.url:
        stack_text = f"the stack at {url}"
    else:
        threads = str(args.intra_op_threads) if args.intra_op_threads else "0 (onnxruntime's choice)"
        stack_text = (
            f"own: gunicorn with {args.web_workers} uvicorn worker(s), "
            f"1 Celery worker (onnxruntime intra-op threads {threads}, not spinning); gRPC "
            + ("inside the web processes" if args.grpc_in_web else f"in {args.web_workers} serve_grpc process(es)")
        )
    tracing_text = "off"
    if sink is not None:
        tracing_text = (
            f"on, sampling {args.tracing_ratio:g} of requests, to a dummy OTLP receiver "
            f"({sink.exports} exports, {sink.bytes / 1024:.0f} KiB)"
        )
    about = [
        f"Turnout benchmark, {started:%Y-%m-%d %H:%M} UTC",
        f"machine: {machine()}; onnxruntime {onnxruntime.__version__}",
        f"stack: {stack_text}",
        f"load: wrk -t1, batch-1 requests with an API key, {args.seconds:g} s per cell after {args.warmup:g} s warm-up",
        f"tracing: {tracing_text}",
        "raw: onnxruntime, default session options (it picks the intra-op threads), CPU provider, "
        f"{args.raw_seconds:g} s per figure, best of a run before and one after the stack",
        f"code: {git_revision()}",
    ]
    print()
    print("\n".join(about))
    print()
    print(render_text(header, rows))
    detail_header, detail_table = detail_rows(results)
    detail_note = (
        "Where the time goes, per cell (means over the measured seconds). mean ms: wrk's mean latency; "
        "gateway ms: inside the gateway's infer handler (after HTTP parsing, key check and rate limit; "
        "before the response is written), of which validate ms (body parse and checks), queue ms "
        "(enqueued until its batch started running) and compute ms (the onnxruntime run); rows/run and "
        "runs/s: the worker's batches. CPU in % of one core "
        f"(the machine has {os.cpu_count()}); other: every other process on the machine"
        + (", the stack under test included." if args.url else ".")
    )
    grpc_header, grpc_table = grpc_rows(results, floors)
    grpc_markdown = render_markdown(grpc_header, grpc_table)
    if grpc_table:
        print(f"\n{GRPC_TITLE}\n")
        print(render_text(grpc_header, grpc_table))
    print(f"\n{detail_note}\n")
    print(render_text(detail_header, detail_table))
    worst = max((c.cpu.get("other", 0.0) for r in results.values() for c in r.cells.values()), default=0.0)
    if worst > 15 and own_stack:
        print(f"\nwarning: other processes used up to {worst:.0f}% of a core during a cell; the numbers are disturbed")
    markdown = "\n".join(
        [
            *[f"{line}  " for line in about],
            "",
            render_markdown(header, rows),
            "",
            *([GRPC_TITLE, "", grpc_markdown, ""] if grpc_table else []),
            detail_note,
            "",
            render_markdown(detail_header, detail_table),
            "",
        ]
    )
    (OUT / "latest.md").write_text(markdown)
    (OUT / "latest.json").write_text(
        json.dumps(
            {
                k: {
                    "raw": vars(r.raw),
                    "provider": r.provider,
                    "cells": {f"{mode}-c{conc}": vars(c) for (mode, conc), c in r.cells.items()},
                    "per_request": {f"c{conc}": vars(c) for conc, c in r.baseline.items()},
                    "lean_per_request": {f"c{conc}": vars(c) for conc, c in r.lean.items()},
                }
                for k, r in results.items()
            },
            indent=2,
        )
    )
    print(f"\nwritten to {(OUT / 'latest.md').relative_to(ROOT)}")
