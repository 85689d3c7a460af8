"""onnxruntime sessions in a worker: provider choice, loading, warm-up, and an
LRU pool bounded by a memory budget. No Django imports."""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from dataplane.wire import NUMPY_DTYPES
from registry import custom_ops, inference_memory

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ProviderUnavailable(RuntimeError):
    pass


class RunMemoryExceeded(RuntimeError):
    """A run needed more CPU memory than the worker's inference limit had free."""

    def __init__(self, requested: int, available: int | None, limit: int | None, overlapped: bool) -> None:
        self.requested = requested
        self.available = available
        self.limit = limit
        # Other runs were in flight: the memory they held may be what was missing.
        self.overlapped = overlapped
        super().__init__(f"a buffer of {requested} bytes did not fit")

    @property
    def transient(self) -> bool:
        """Could fit once the other runs finish: it alone is within the limit."""
        return self.overlapped and (self.limit is None or self.requested <= self.limit)


class DeadlinePassed(RuntimeError):
    """The watchdog stopped a run at its deadline."""


class Watchdog:
    """Stops runs at their deadline: one thread for the process sets `terminate` on the
    run options of any run still going when its deadline comes (onnxruntime checks the
    flag between nodes and inside loops, so the run ends within a node's time)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list[Any]] = []  # [deadline, sequence, options, state]
        self._sequence = 0
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, options: Any) -> list[Any]:
        """Watch a run that must end by `deadline` (time.monotonic())."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="turnout-watchdog", daemon=True)
                self._thread.start()
            self._sequence += 1
            entry = [deadline, self._sequence, options, _ARMED]
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()
            return entry

    def disarm(self, entry: list[Any]) -> bool:
        """Stop watching; True if the run was stopped."""
        with self._cond:
            fired = entry[3] == _FIRED
            entry[3] = _DONE
            return fired

    def _watch(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][3] == _DONE:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                entry = self._heap[0]
                wait = entry[0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                entry[2].terminate = True
                entry[3] = _FIRED


_ARMED, _FIRED, _DONE = 0, 1, 2
watchdog = Watchdog()


class _RunsInFlight:
    """Which runs of this process overlapped another, to tell a run that needs more than
    the limit from one that found the limit taken by others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._overlapped: dict[int, bool] = {}
        self._next = 0

    def start(self) -> int:
        with self._lock:
            token = self._next
            self._next += 1
            for other in self._overlapped:
                self._overlapped[other] = True
            self._overlapped[token] = bool(self._overlapped)
            return token

    def finish(self, token: int) -> bool:
        with self._lock:
            return self._overlapped.pop(token)


_runs = _RunsInFlight()


def choose_providers(preference: str, available: list[str] | None = None) -> list[str]:
    """CUDA when present and allowed, else CPU; `cuda` preference without CUDA is an error."""
    available = available if available is not None else ort.get_available_providers()
    if preference in ("auto", "cuda") and CUDA in available:
        return [CUDA, CPU]
    if preference == "cuda":
        raise ProviderUnavailable(f"this version requires CUDA, but this worker only has {available}")
    return [CPU]


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class LoadedSession:
    version_id: int
    session: Any
    provider: str
    input_names: list[str]
    output_names: list[str]
    output_datatypes: list[str]
    memory_bytes: int
    load_seconds: float
    last_used: float = field(default_factory=time.monotonic)

    def run(self, feeds: dict[str, Any], deadline: float | None = None) -> list[Any]:
        """One inference within the worker's memory limit; RunMemoryExceeded when it did not fit,
        DeadlinePassed when it was stopped at `deadline` (time.monotonic())."""
        options = inference_memory.run_options()
        watched = None
        if deadline is not None:
            options = options or ort.RunOptions()
            options.log_severity_level = 4  # a stopped run is answered 504; onnxruntime would log it as an error
            watched = watchdog.arm(deadline, options)
        token = _runs.start()
        try:
            outputs = self.session.run(self.output_names, feeds, options)
        except Exception as exc:
            overlapped = _runs.finish(token)
            if watched is not None and watchdog.disarm(watched):
                raise DeadlinePassed("stopped at its deadline") from exc
            failure = inference_memory.memory_failure(exc)
            if failure is None:
                raise
            requested, available = failure
            raise RunMemoryExceeded(requested, available, inference_memory.limit(), overlapped) from exc
        _runs.finish(token)
        if watched is not None:
            watchdog.disarm(watched)
        return list(outputs)


def sample_inputs(signature: dict[str, Any], batch: int = 1) -> dict[str, np.ndarray]:
    """Inputs of the signature's shapes for warm-up (dynamic dims 1, batch `batch`)."""
    feed = {}
    for spec in signature["inputs"]:
        shape = [1 if dim < 0 else dim for dim in spec["shape"]]
        if signature.get("batch_dim") and shape:
            shape[0] = batch
        datatype = spec["datatype"]
        if datatype == "BYTES":
            feed[spec["name"]] = np.full(shape, "a", dtype=object)
        else:
            feed[spec["name"]] = np.zeros(shape, dtype=NUMPY_DTYPES[datatype])
    return feed


def load_session(
    version_id: int, path: str, signature: dict[str, Any], preference: str, intra_op_threads: int = 0
) -> LoadedSession:
    providers = choose_providers(preference)
    options = ort.SessionOptions()
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    # Idle intra-op threads spin by default, burning the cores the web process and
    # other versions need between batches (measured in docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    inference_memory.configure(options)
    custom_ops.enable(options)
    before = _rss_bytes()
    started = time.perf_counter()
    session = ort.InferenceSession(path, sess_options=options, providers=providers)
    elapsed = time.perf_counter() - started
    used = session.get_providers()[0]
    memory = max(_rss_bytes() - before, os.path.getsize(path))
    outputs = signature["outputs"]
    logger.info(
        "version %s loaded on %s (%s intra-op threads) in %.3f s (~%d MiB)",
        version_id,
        used,
        intra_op_threads or "default",
        elapsed,
        memory >> 20,
    )
    return LoadedSession(
        version_id=version_id,
        session=session,
        provider=used,
        input_names=[spec["name"] for spec in signature["inputs"]],
        output_names=[spec["name"] for spec in outputs],
        output_datatypes=[spec["datatype"] for spec in outputs],
        memory_bytes=memory,
        load_seconds=elapsed,
    )


def warm_up(loaded: LoadedSession, signature: dict[str, Any]) -> None:
    """A few runs so the first client request does not pay for lazy initialisation."""
    for batch in (1, 2):
        loaded.run(sample_inputs(signature, batch))


class SessionPool:
    """Loaded sessions, least recently used first out when over the memory budget."""

    def __init__(self, budget_bytes: int, intra_op_threads: int = 0) -> None:
        self.budget_bytes = budget_bytes
        self.intra_op_threads = intra_op_threads
        self._sessions: OrderedDict[int, LoadedSession] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        self.on_change: Callable[[int, LoadedSession | None], None] | None = None

    def get(self, version_id: int) -> LoadedSession | None:
        with self._lock:
            loaded = self._sessions.get(version_id)
            if loaded is not None:
                self._sessions.move_to_end(version_id)
                loaded.last_used = time.monotonic()
            return loaded

    def load(
        self,
        version_id: int,
        path_provider: Callable[[], Any],
        signature: dict[str, Any],
        preference: str,
        intra_op_threads: int = 0,
    ) -> LoadedSession:
        """Load once even if several threads ask at the same time; `path_provider` is a
        context manager factory yielding a local path to the artifact. `intra_op_threads`
        0 means the pool's default."""
        with self._lock:
            gate = self._loading.setdefault(version_id, threading.Lock())
        with gate:
            existing = self.get(version_id)
            if existing is not None:
                return existing
            with path_provider() as path:
                threads = intra_op_threads or self.intra_op_threads
                loaded = load_session(version_id, path, signature, preference, threads)
            with self._lock:
                self._sessions[version_id] = loaded
                evicted = self._evict_locked(keep=version_id)
            for victim in evicted:
                logger.info("version %s unloaded: memory budget of %d MiB exceeded", victim, self.budget_bytes >> 20)
                self._notify(victim, None)
            self._notify(version_id, loaded)
            return loaded

    def unload(self, version_id: int) -> bool:
        with self._lock:
            removed = self._sessions.pop(version_id, None)
        if removed is not None:
            self._notify(version_id, None)
        return removed is not None

    def loaded(self) -> dict[int, LoadedSession]:
        with self._lock:
            return dict(self._sessions)

    def memory_bytes(self) -> int:
        with self._lock:
            return sum(s.memory_bytes for s in self._sessions.values())

    def _evict_locked(self, keep: int) -> list[int]:
        evicted = []
        while sum(s.memory_bytes for s in self._sessions.values()) > self.budget_bytes and len(self._sessions) > 1:
            victim = next(v for v in self._sessions if v != keep)
            del self._sessions[victim]
            evicted.append(victim)
        return evicted

    def _notify(self, version_id: int, loaded: LoadedSession | None) -> None:
        if self.on_change is not None:
            self.on_change(version_id, loaded)
