"""bench/run.py's options: --modes takes on, off and both, and refuses anything else by name
(before, "both" was taken for a mode and measured the no-batching twins under that label)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run


@pytest.mark.parametrize(
    ("given", "modes"),
    [("on,off", ["on", "off"]), ("both", ["on", "off"]), ("off", ["off"]), (" off , on,off", ["off", "on"])],
)
def test_modes(given: str, modes: list[str]) -> None:
    assert run.parse_args(["--modes", given]).modes == modes


def test_the_default_is_both_modes() -> None:
    assert run.parse_args([]).modes == ["on", "off"]


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("batching", "unknown batching mode 'batching'"),
        ("on,maybe", "unknown batching mode 'maybe'"),
        (",", "no batching mode"),
    ],
)
def test_an_unknown_mode_is_refused_by_name(given: str, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        run.parse_args(["--modes", given])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--modes" in error
    assert said in error
