"""The lock files pin every package with its hashes, so an install can only ever get the
exact files that were locked (pip and uv check them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["dev.lock", "cpu.lock", "gpu.lock"])
def test_every_locked_package_is_pinned_with_its_hashes(name: str) -> None:
    text = (ROOT / "requirements" / name).read_text()
    # One entry per package: "name==version \" followed by its "--hash=sha256:..." lines.
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text)
    packages = [entry for entry in entries if re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==", entry)]

    assert len(packages) > 20
    for entry in packages:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry.splitlines()[0]
