"""A time budget for periodic work that runs in Celery's thread pool.

Celery enforces `time_limit` and `soft_time_limit` only in its prefork pool; Turnout's
workers run the thread pool (serving loops and control tasks share the process), where
nothing interrupts a task. Long periodic tasks therefore bound themselves: they stop at
a safe point once their budget is spent and leave the rest to the next run, which
their design already makes safe (docs/operations.md, "How each task is bounded").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    seconds: float | None  # None: unbounded (a direct call, a test)
    started: float = field(default_factory=time.monotonic)

    def spent(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.started >= self.seconds
