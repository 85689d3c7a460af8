"""Fuzzing the management API from its own OpenAPI schema: no input gets a 5xx.

schemathesis generates requests for every operation of `/api/schema/`, valid and
invalid (wrong types, missing fields, odd strings, NUL characters, huge numbers), and
sends them in-process to the Django application, authenticated twice: with a real
`manage` API key (as a script) and with a real session and CSRF token (as the
browser). Every answer must be below 500 (schemathesis's `not_a_server_error`).

Bounded: a fixed number of examples per operation, derandomized (the same requests on
every run, so a failure reproduces), no shrinking; under two minutes. Before the NUL,
page-size and JSON-depth fixes, this run found 228 server errors.

Persona: `admin` (may do everything), so that requests reach the code behind the
permission checks. The database is this test's own (transactional: every request
commits, as in production, and everything is flushed afterwards); uploads go to a
temporary folder and their validation tasks to this run's own queue, which no
worker consumes.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import Client
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from accounts import services as keys
from registry import services as registry
from registry.demo_models import build_mlp
from rollouts import services as rollouts

# About 115 s on an idle 2-core machine since the keys, plans and inference-document operations
# joined the schema (90 s before); 436 s alone while five other test suites shared the cores.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

# Per operation, generation mode, set of path parameters and caller: about 3,100 requests
# with the coverage phase's, 80-115 s on the 2-core development machine.
EXAMPLES = 12
# Values schemathesis seldom draws that broke the API once, put in one query or path
# parameter of a generated request (None: the request as generated).
HOSTILE = [None, None, "a\x00b", "\x00", str(2**63), str(-(2**63) - 1), "1e309", "../", "%00"]
CSRF_TOKEN = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz"  # 32 characters: Django's unmasked token form


@pytest.fixture
def artifact_root(settings: Any, tmp_path: Path) -> Path:
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    return tmp_path


@pytest.fixture
def callers(admin: Any, redis_client: Any) -> dict[str, dict[str, Any]]:
    """How each caller authenticates: headers and cookies added to every request."""
    _, secret = keys.create_key(admin, name="fuzz", model_patterns=["*"], actions=["manage"])
    # A generous plan: the fuzzer is not testing the rate limit.
    key = admin.api_keys.get(name="fuzz")
    keys.set_limits(key, actor=admin, requests_per_window=100_000, window_seconds=1, burst=100_000)
    browser = Client()
    browser.force_login(admin)
    session = browser.cookies["sessionid"].value
    return {
        "key": {"headers": {"Authorization": f"Bearer {secret}"}, "cookies": {}},
        "session": {
            "headers": {"X-CSRFToken": CSRF_TOKEN},
            "cookies": {"sessionid": session, "csrftoken": CSRF_TOKEN},
        },
    }


@pytest.fixture
def known_objects(admin: Any, artifact_root: Path, django_capture_on_commit_callbacks: Any) -> dict[str, Any]:
    """Objects some generated requests name, so that they reach past the 404 (the rest are random)."""
    model = registry.create_model(name="iris", actor=admin)
    ready = []
    for seed in (0, 1):
        with django_capture_on_commit_callbacks(execute=False):
            version = registry.upload_version(model, io.BytesIO(build_mlp(4, [8], 2, seed=seed)), actor=admin).version
        registry.run_validation(version.validation_jobs.get().pk)
        version.refresh_from_db()
        ready.append(version)
    registry.set_alias(model, "production", ready[0], actor=admin)
    shadow = rollouts.start_shadow(model, ready[1], actor=admin, fraction=0.5)
    return {"model_name": "iris", "name": "iris", "number": 1, "alias": "production", "id": shadow.pk}


@dataclass
class Fuzzing:
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (caller, status class) -> answers

    def run(self, strategy: Any, caller: str, auth: dict[str, Any]) -> None:
        @given(case=strategy, hostile=st.sampled_from(HOSTILE), index=st.integers(min_value=0, max_value=15))
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def send(case: Any, hostile: str | None, index: int) -> None:
            parameters = [
                (container, name) for container in (case.query, case.path_parameters) if container for name in container
            ]
            if hostile is not None and parameters:
                container, name = parameters[index % len(parameters)]
                container[name] = hostile
            self.send(case, caller, auth)

        send()

    def send(self, case: Any, caller: str, auth: dict[str, Any]) -> None:
        self.calls += 1
        response = case.call(headers=auth["headers"], cookies=auth["cookies"])
        self.statuses[caller, response.status_code // 100] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, BaseExceptionGroup):  # one failure, or a group of them
            self.failures.append(f"{caller} {response.status_code} {case.as_curl_command()}")


def test_the_management_api_answers_no_5xx_to_generated_input(
    callers: dict[str, dict[str, Any]], known_objects: dict[str, Any]
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    fuzzing = Fuzzing()

    for result in schema.get_all_operations():
        operation = result.ok()
        known = {p.name: known_objects[p.name] for p in operation.path_parameters if p.name in known_objects}
        # Random path parameters (mostly 404s), and, where the path names objects, known ones.
        variants = [None, known] if known else [None]
        # schemathesis's coverage phase: each parameter's boundaries and wrong types, one at a time.
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        config = schema.config.generation_for(operation=operation)
        for case in schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=config):
            fuzzing.send(case, "key", callers["key"])
        for mode, path_parameters, (caller, auth) in itertools.product(
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE), variants, callers.items()
        ):
            fuzzing.run(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters), caller, auth)

    assert fuzzing.calls > 200
    # Both callers got past authentication to real answers, and were refused on bad input.
    assert all(fuzzing.statuses[caller, kind] for caller in callers for kind in (2, 4)), fuzzing.statuses
    assert not fuzzing.failures, "server errors:\n" + "\n".join(fuzzing.failures)
