"""What a benchmark run measures and where it writes it: the figures (Raw, onnxruntime alone;
Cell, one load cell; ModelResult, a model's figures), the concurrencies of the cells, the folders
(ROOT, OUT) and BenchError, which ends a run with a message instead of a traceback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = BENCH / "out"
CONCURRENCIES = (1, 64)


class BenchError(Exception):
    pass


@dataclass
class Raw:
    b1_sps: float
    b64_sps: float
    b1_p50_ms: float
    b64_sps_1thread: float = 0.0  # context: the worker's session with one intra-op thread

    def best(self, other: Raw) -> Raw:
        """Per figure, the better of two measurements: other processes only ever slow it down."""
        return Raw(
            max(self.b1_sps, other.b1_sps),
            max(self.b64_sps, other.b64_sps),
            min(self.b1_p50_ms, other.b1_p50_ms),
            max(self.b64_sps_1thread, other.b64_sps_1thread),
        )


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    mean_ms: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # role -> % of one core during the cell
    stages: dict[str, float] = field(default_factory=dict)  # from the stack's own metrics: see StageMeter


@dataclass
class ModelResult:
    key: str
    raw: Raw
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)  # ("on"|"off", concurrency)
    provider: str = ""
    baseline: dict[int, Cell] = field(default_factory=dict)  # concurrency -> the per-request server's cell
    lean: dict[int, Cell] = field(default_factory=dict)  # concurrency -> the hand-tuned per-request server's

    def cell(self, mode: str, conc: int) -> Cell | None:
        return self.cells.get((mode, conc))
