"""How a worker keeps track of what it serves: one consistent snapshot of the registry, whatever is
deleted between the queries of the read, and a refresh loop and a notice listener that outlive
an unexpected error. Real PostgreSQL; the concurrent delete runs on a second connection (another
thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, connections, transaction

from registry.models import PIPELINE_FRAMEWORK, ModelKind, ModelVersion, PipelineStage, RegisteredModel, VersionStatus
from workers import serving
from workers.served import ready_versions

SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
}


def ready_version(model: RegisteredModel, framework: str = "onnx") -> ModelVersion:
    return ModelVersion.objects.create(
        model=model,
        number=1,
        status=VersionStatus.READY,
        signature=SIGNATURE,
        sha256="0" * 64,
        size_bytes=1,
        artifact=f"{model.name}/1.onnx" if framework == "onnx" else "",
        framework=framework,
    )


def in_another_connection(work: Callable[[], Any]) -> None:
    """Run `work` on a connection of its own, committed before this returns (as another process would)."""

    def run() -> None:
        try:
            work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.fixture
def pipeline_and_stage(transactional_db: None) -> tuple[ModelVersion, ModelVersion]:
    stage_model = RegisteredModel.objects.create(name="snap-stage")
    stage = ready_version(stage_model)
    chain = RegisteredModel.objects.create(name="snap-chain", kind=ModelKind.PIPELINE)
    pipeline = ready_version(chain, framework=PIPELINE_FRAMEWORK)
    PipelineStage.objects.create(pipeline_version=pipeline, position=0, name="only", version=stage)
    return pipeline, stage


def test_a_pipeline_and_its_stage_deleted_in_the_middle_of_the_read_are_still_read_whole(
    pipeline_and_stage: tuple[ModelVersion, ModelVersion],
) -> None:
    """The read that once killed a worker's refresh thread: the stage rows are read, then the
    pipeline and its stage version are deleted and committed, then the versions of the stages
    are read. Every query answers from the first one's snapshot."""
    pipeline, stage = pipeline_and_stage
    ids = [pipeline.pk, stage.pk]
    deleted: list[str] = []

    def delete_after_the_stage_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if not deleted and 'FROM "registry_pipelinestage"' in sql:
            in_another_connection(lambda: (pipeline.delete(), stage.delete()))
            deleted.append(sql)
        return result

    with connection.execute_wrapper(delete_after_the_stage_query):
        served = {v.model: v for v in ready_versions(["snap-*"])}

    assert deleted, "the read never queried the stages"
    assert not ModelVersion.objects.filter(pk__in=ids).exists()
    assert set(served) == {"snap-chain", "snap-stage"}
    (only,) = served["snap-chain"].stages
    assert (only.name, only.version_id, only.label) == ("only", ids[1], "snap-stage v1")
    # The next read sees the deletion.
    assert ready_versions(["snap-*"]) == []


def test_inside_an_outer_transaction_the_read_keeps_that_transaction(
    pipeline_and_stage: tuple[ModelVersion, ModelVersion],
) -> None:
    with transaction.atomic():
        ModelVersion.objects.count()  # the isolation level can no longer be set
        assert {v.model for v in ready_versions(["snap-*"])} == {"snap-chain", "snap-stage"}


def test_the_refresh_loop_goes_on_after_an_unexpected_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only database and Redis errors were retried: anything else ended the thread, and the worker
    never loaded another version."""
    worker = serving.Serving.__new__(serving.Serving)  # the loop only; no Redis, no sessions
    worker._stop = threading.Event()
    worker._wake = threading.Event()
    calls: list[int] = []

    def reconcile() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise PipelineStage.version.RelatedObjectDoesNotExist("PipelineStage has no version.")
        worker._stop.set()

    worker._reconcile = reconcile  # type: ignore[method-assign]
    monkeypatch.setattr(serving, "REFRESH_SECONDS", 0.01)
    loop = threading.Thread(target=worker._manage)
    loop.start()
    loop.join(timeout=10)

    assert not loop.is_alive()
    assert len(calls) == 2


def test_the_notice_listener_goes_on_after_an_unexpected_error(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = serving.Serving.__new__(serving.Serving)  # the listener only
    worker._stop = threading.Event()
    worker._wake = threading.Event()
    worker.keys = SimpleNamespace(catalog_channel=lambda: "notices")
    subscriptions: list[str] = []

    class PubSub:
        def subscribe(self, channel: str) -> None:
            subscriptions.append(channel)
            if len(subscriptions) == 1:
                raise TypeError("a bug while subscribing")

        def get_message(self, timeout: float) -> dict[str, Any]:
            worker._stop.set()
            return {"type": "message"}

        def close(self) -> None:
            pass

    worker.redis = SimpleNamespace(pubsub=lambda ignore_subscribe_messages: PubSub())
    monkeypatch.setattr(worker._stop, "wait", lambda seconds: False)  # no 1 s pause in the test
    listener = threading.Thread(target=worker._listen)
    listener.start()
    listener.join(timeout=10)

    assert not listener.is_alive()
    assert subscriptions == ["notices", "notices"]
    assert worker._wake.is_set()
