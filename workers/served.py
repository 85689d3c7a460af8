"""Which versions a worker serves, as the registry says now: every ready version of the
models its patterns match, with a pipeline's stages, read in one snapshot. Used by
workers/serving.py on each refresh."""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterator

from django.db import connection, transaction

from registry.models import Alias, ModelVersion, VersionStatus
from registry.services import PRODUCTION
from workers.consumer import ServedVersion
from workers.pipeline import ServedStage


def _stages(version: ModelVersion) -> tuple[ServedStage, ...]:
    return tuple(
        ServedStage(
            name=stage.name,
            version_id=stage.version.id,
            label=str(stage.version),
            artifact=stage.version.artifact,
            signature=stage.version.signature or {},
            inputs=tuple(sorted(stage.inputs.items())),
            timeout_ms=stage.timeout_ms,
            execution_provider=stage.version.execution_provider,
            intra_op_threads=stage.version.intra_op_threads,
        )
        for stage in sorted(version.stages.all(), key=lambda s: s.position)
    )


@contextlib.contextmanager
def _one_snapshot() -> Iterator[None]:
    """The reads inside see the registry as of one moment.

    A prefetch is several queries, and under READ COMMITTED each sees what was committed when it
    started: a pipeline and its stage version deleted between the stage query and the version
    query leave a stage without its version. A read-only REPEATABLE READ transaction reads every
    query from the first one's snapshot and takes no lock that writers wait on.
    """
    if connection.in_atomic_block:  # an outer transaction already chose its isolation
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def ready_versions(patterns: list[str]) -> list[ServedVersion]:
    with _one_snapshot():
        versions = list(
            ModelVersion.objects.filter(status=VersionStatus.READY)
            .select_related("model")
            .prefetch_related("stages__version__model")
        )
        production = set(Alias.objects.filter(name=PRODUCTION).values_list("version_id", flat=True))
    return [
        ServedVersion(
            id=v.id,
            model=v.model.name,
            number=v.number,
            signature=v.signature or {},
            artifact=v.artifact,
            max_batch_size=v.max_batch_size,
            max_queue_delay_ms=v.max_queue_delay_ms,
            preferred_batch_sizes=tuple(v.preferred_batch_sizes or ()),
            execution_provider=v.execution_provider,
            warmup=v.warmup,
            intra_op_threads=v.intra_op_threads,
            production=v.id in production,
            stages=_stages(v) if v.is_pipeline else (),
            pipeline_outputs=tuple((name, source) for name, source in v.pipeline_outputs or []),
        )
        for v in versions
        if any(fnmatch.fnmatchcase(v.model.name, pattern) for pattern in patterns)
    ]
