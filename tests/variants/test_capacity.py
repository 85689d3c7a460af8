"""Capacity reports: the batching model and the recommendation (pure), the real run on the demo's
mlp_small in a child process, applying the recommendation (audited), the API and the page."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry.demo_models import build_mlp_small
from registry.models import JobStatus, ModelVersion
from tests.support.clients import signed_in
from tests.variants.conftest import Add
from variants.capacity import recommend, simulate
from variants.capacity_services import (
    CapacityRefused,
    apply_recommendation,
    run_capacity_report,
    start_capacity_report,
)
from variants.models import CapacityReport

pytestmark = pytest.mark.django_db


def test_a_lone_request_runs_at_once_and_a_burst_shares_one_batch() -> None:
    sizes: list[int] = []

    def run(rows: int) -> float:
        sizes.append(rows)
        return 0.010

    # one request, then four at once 1 s later
    latencies = simulate(run, [0.0, 1.0, 1.0, 1.0, 1.0], max_batch=8, delay_s=0.002)

    assert sizes == [1, 4]
    # the burst lingered the full 2 ms for more (none came), then ran 10 ms
    assert latencies == pytest.approx([0.010, 0.012, 0.012, 0.012, 0.012])


def test_a_full_batch_does_not_linger_and_the_rest_waits_its_turn() -> None:
    sizes: list[int] = []

    def run(rows: int) -> float:
        sizes.append(rows)
        return 0.005

    latencies = simulate(run, [0.0] * 5, max_batch=2, delay_s=0.002)

    assert sizes == [2, 2, 1]
    assert latencies == pytest.approx([0.005, 0.005, 0.010, 0.010, 0.015])


def test_the_recommendation_is_the_setting_that_sustains_most_within_the_target() -> None:
    results = [
        {
            "max_batch_size": 1,
            "max_queue_delay_ms": 0.0,
            "points": [{"rate_rps": 100.0, "p99_ms": 2.0}, {"rate_rps": 500.0, "p99_ms": 80.0}],
        },
        {
            "max_batch_size": 32,
            "max_queue_delay_ms": 2.0,
            "points": [{"rate_rps": 100.0, "p99_ms": 4.0}, {"rate_rps": 500.0, "p99_ms": 9.0}],
        },
    ]

    assert recommend(results, 10.0) == {
        "max_batch_size": 32,
        "max_queue_delay_ms": 2.0,
        "preferred_batch_sizes": [32],
        "sustained_rps": 500.0,
        "p99_ms": 9.0,
    }
    assert recommend(results, 1.0) is None


def test_measuring_mlp_small_recommends_settings_and_applying_them_changes_the_version(
    add: Add, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    version = add(build_mlp_small())
    ModelVersion.objects.filter(pk=version.pk).update(max_batch_size=32, max_queue_delay_ms=7.0)
    version.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):
        started = start_capacity_report(version, p99_target_ms=50.0, actor=owner)

    done = run_capacity_report(started.pk)

    assert done is not None
    assert done.status == JobStatus.SUCCEEDED, done.reason
    result = done.result
    assert result is not None
    assert result["estimated_capacity_rps"] > 0
    assert [(s["max_batch_size"], s["max_queue_delay_ms"]) for s in result["settings"]] == [
        (1, 0.0), (8, 0.0), (8, 2.0), (8, 5.0), (32, 0.0), (32, 2.0), (32, 5.0),
    ]  # fmt: skip
    assert all(len(s["points"]) == 6 for s in result["settings"])
    recommended = done.recommendation
    assert recommended is not None
    assert recommended["p99_ms"] <= 50.0

    apply_recommendation(done, actor=owner)

    version.refresh_from_db()
    assert version.max_batch_size == recommended["max_batch_size"]
    assert version.max_queue_delay_ms == recommended["max_queue_delay_ms"]
    assert version.preferred_batch_sizes == recommended["preferred_batch_sizes"]
    assert AuditEntry.objects.filter(action="version.capacity_applied").count() == 1
    assert AuditEntry.objects.filter(action="version.updated").count() == 1
    assert CapacityReport.objects.get(pk=done.pk).applied_by == owner


def test_bad_targets_and_versions_are_refused_and_a_report_without_a_recommendation_cannot_be_applied(
    add: Add, owner: Any
) -> None:
    version = add(build_mlp_small())

    with pytest.raises(CapacityRefused, match="p99_target_ms must be from 1 to 600000"):
        start_capacity_report(version, p99_target_ms=0.5, actor=owner)
    report = CapacityReport.objects.create(version=version, p99_target_ms=5, status=JobStatus.SUCCEEDED, result={})
    with pytest.raises(CapacityRefused, match="no recommendation to apply"):
        apply_recommendation(report, actor=owner)
    assert CapacityReport.objects.count() == 1


def test_the_api_and_the_page_start_a_report_and_apply_it(
    add: Add, owner: Any, owner_api: APIClient, viewer_api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    version = add(build_mlp_small())
    assert (
        viewer_api.post("/api/models/fraud/versions/1/capacity/", {"p99_target_ms": 50}, format="json").status_code
        == 403
    )
    bad = owner_api.post("/api/models/fraud/versions/1/capacity/", {"p99_target_ms": "soon"}, format="json")
    assert bad.status_code == 400
    assert not CapacityReport.objects.exists()

    with django_capture_on_commit_callbacks(execute=False):
        started = owner_api.post("/api/models/fraud/versions/1/capacity/", {"p99_target_ms": 50}, format="json")
    assert started.status_code == 202, started.json()
    report = CapacityReport.objects.get()
    report.status, report.result = (
        JobStatus.SUCCEEDED,
        {
            "p99_target_ms": 50,
            "estimated_capacity_rps": 1000.0,
            "settings": [
                {"max_batch_size": 8, "max_queue_delay_ms": 2.0, "points": [{"rate_rps": 900.0, "p99_ms": 12.0}]}
            ],
            "recommendation": {
                "max_batch_size": 8,
                "max_queue_delay_ms": 2.0,
                "preferred_batch_sizes": [8],
                "sustained_rps": 900.0,
                "p99_ms": 12.0,
            },
        },
    )
    report.save()

    page = signed_in(owner).get("/variants/models/fraud/versions/1/comparisons/", headers={"HX-Request": "true"})
    assert "<strong>900 requests/s</strong>" in page.content.decode()
    applied = owner_api.post(f"/api/models/fraud/versions/1/capacity-reports/{report.pk}/apply/")
    assert applied.status_code == 200, applied.json()
    assert applied.json()["applied_by"] == "olga"
    version.refresh_from_db()
    assert (version.max_batch_size, version.preferred_batch_sizes) == (8, [8])
    listed = viewer_api.get("/api/models/fraud/versions/1/capacity-reports/")
    assert [r["id"] for r in listed.json()] == [report.pk]
