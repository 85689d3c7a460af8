"""The registry the rollouts API and page tests share: `catalog`, made once per module.

Its `owner` (olga) and `maintainer` (otto) are the personas of tests/conftest.py, with
the same rights, but created once for the module and committed: validating versions
takes a child process each, so the models are registered once, and each test runs in
a transaction rolled back at its end. A test here takes `catalog.owner` and
`catalog.maintainer`, never the `owner` or `maintainer` fixtures (a second olga or
otto would clash); `viewer` and `admin` are the usual fixtures.

The rollout tests with real workers and traffic are in tests/integration/
(test_canary_end_to_end.py, test_experiment_feedback.py, test_shadow.py,
test_sticky_assignment.py).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry import services
from registry.models import RegisteredModel
from tests.factories import UserFactory
from tests.support.rollout_models import champion_model
from tests.support.serving import Registry, committed_registry


@dataclass
class Catalog:
    """`fraud` (owner: olga): v1 production, v2 and v3 ready, v4 pending. `churn` (owner: otto): v1 production."""

    registry: Registry
    owner: Any
    maintainer: Any


@pytest.fixture(scope="module")
def catalog(django_db_setup: Any, django_db_blocker: Any, artifact_dir: Path) -> Iterator[Catalog]:
    with committed_registry(django_db_blocker, artifact_dir) as shared:
        otto = UserFactory(username="otto", maintainer=True)
        for seed in range(3):
            shared.add("fraud", champion_model(seed), production=seed == 0)
        pending = services.upload_version(
            RegisteredModel.objects.get(name="fraud"), io.BytesIO(champion_model(9)), actor=shared.owner
        )
        assert pending.version.number == 4
        Registry(otto).add("churn", champion_model(5))
        yield Catalog(shared, shared.owner, otto)
