"""Summarise py-spy profiles recorded by `bench/run.py --profile` (py-spy `--format raw`).

    .venv/bin/python bench/profile_summary.py bench/out/profile-mlp_small-web-*.txt [--top 25]

Prints, as % of the samples in which the process was running Python (py-spy
leaves idle threads out by default):
- self time per package (the top frame's file: a site-packages package, or the project module);
- self time per function;
- inclusive time per function (each function counted once per stack).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(paths: list[Path]) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for path in paths:
        for raw in path.read_text(errors="replace").splitlines():
            raw = raw.rstrip()
            if not raw:
                continue
            body, _, count = raw.rpartition(" ")
            if not count.isdigit():
                continue
            frames = []
            for part in body.split(";"):
                match = FRAME.match(part.strip())
                if match is None:
                    continue  # the process and thread labels
                frames.append((match.group("func"), match.group("file")))
            if frames:
                stacks.append((frames, int(count)))
    return stacks


def package(file: str) -> str:
    if "site-packages/" in file:
        rest = file.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in file:
        rest = re.split(r"/lib/python3\.\d+/", file, maxsplit=1)[1]
        return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py")
    for root in ("controlplane/", "workers/", "registry/", "rollouts/"):
        index = file.find(root)
        if index >= 0:
            return file[index:].removesuffix(".py")
    return file


def short(func: str, file: str) -> str:
    return f"{func} ({package(file)})"


def summarise(paths: list[Path], top: int) -> str:
    stacks = parse(paths)
    total = sum(count for _, count in stacks)
    if not total:
        return "no samples"
    by_package: Counter[str] = Counter()
    by_self: Counter[str] = Counter()
    by_inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        # py-spy writes the root first and the running frame last.
        func, file = frames[-1]
        by_package[package(file)] += count
        by_self[short(func, file)] += count
        for name in {short(f, fl) for f, fl in frames}:
            by_inclusive[name] += count
    lines = [f"{', '.join(p.name for p in paths)}: {total} samples", "", "self time by package:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_package.most_common(top)]
    lines += ["", "self time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_self.most_common(top)]
    lines += ["", "inclusive time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.paths, args.top))


if __name__ == "__main__":
    main()
