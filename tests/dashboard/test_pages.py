"""The overview, model and workers pages: who may see them, the full page and
the htmx partial that refreshes itself, and what they say when empty."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client

from controlplane.redis_client import redis_keys
from dataplane.liveness import record_heartbeat
from observability import queries, rollup
from tests.support.figures import MODEL, observations

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def embedded(html: bytes, element_id: str) -> Any:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html.decode(), re.S)
    assert found, f"no JSON named {element_id}"
    return json.loads(found.group(1))


@pytest.fixture
def browser(client: Client, viewer: Any, redis_client: redis.Redis) -> Client:
    """The viewer, signed in: any signed-in user reads the dashboard."""
    client.force_login(viewer)
    return client


@pytest.mark.parametrize("path", ["/", f"/dashboard/models/{MODEL}/", "/dashboard/workers/"])
def test_pages_need_a_signed_in_user(client: Client, path: str) -> None:
    for headers in ({}, HTMX):
        response = client.get(path, headers=headers)

        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


def test_overview_without_models_says_how_to_add_one(browser: Client) -> None:
    response = browser.get("/")

    assert response.status_code == 200
    assert b"No models yet." in response.content
    assert b"Services" in response.content


def test_overview_without_traffic_shows_a_request_to_send(browser: Client, register: Callable[..., Any]) -> None:
    register(MODEL)

    response = browser.get("/?window=5m")

    assert b"No traffic in the last 5m. Send a request:" in response.content
    assert f"/v2/models/{MODEL}/infer".encode() in response.content
    assert b"&quot;shape&quot;:[1,4]" in response.content  # the production version's real input


def test_overview_lists_models_with_figures_and_sparklines(
    browser: Client, register: Callable[..., Any], inject: Callable[..., Any]
) -> None:
    register(MODEL)
    inject(observations(120, seed=1), dt.datetime.now(dt.UTC))

    full = browser.get("/")
    partial = browser.get("/?window=24h", headers=HTMX)

    assert full.status_code == partial.status_code == 200
    assert b"<html" in full.content
    assert b"<html" not in partial.content
    assert b'id="overview"' in partial.content
    assert b"Services" not in partial.content
    assert b'hx-trigger="every 5s"' in partial.content
    assert b'hx-get="/?window=24h"' in partial.content
    spark = embedded(partial.content, f"spark-{MODEL}")
    assert len(spark["x"]) <= queries.SPARK_POINTS
    assert f'href="/dashboard/models/{MODEL}/?window=24h"'.encode() in partial.content
    assert b"vendor/uplot/uPlot.iife.min.js" in full.content
    assert b"turnout/charts.js" in full.content
    for window in queries.DASHBOARD_WINDOWS:
        assert f'href="/?window={window}" hx-get="/?window={window}"'.encode() in full.content


def test_an_unknown_window_falls_back_to_an_hour(browser: Client) -> None:
    response = browser.get("/?window=1y", headers=HTMX)

    assert b'hx-get="/?window=1h"' in response.content
    assert b'aria-current="true">1h<' in response.content


def test_model_page_for_an_unknown_model_is_404(browser: Client) -> None:
    assert browser.get("/dashboard/models/nope/").status_code == 404


def test_model_page_without_a_ready_version_says_to_upload(browser: Client, register: Callable[..., Any]) -> None:
    register(MODEL, ready=False)

    response = browser.get(f"/dashboard/models/{MODEL}/")

    assert response.status_code == 200
    assert b"No version of iris is ready yet." in response.content
    assert f"/models/{MODEL}/upload/".encode() in response.content


def test_model_page_without_traffic_shows_a_request_to_send(browser: Client, register: Callable[..., Any]) -> None:
    register(MODEL)

    response = browser.get(f"/dashboard/models/{MODEL}/?window=1h")

    assert b"No traffic to iris in the last 1h. Send a request:" in response.content
    assert embedded(response.content, "model-summary")["summary"]["requests"] == 0


def test_model_page_shows_each_versions_charts_and_the_dashboard_figures(
    browser: Client, register: Callable[..., Any], inject: Callable[..., Any]
) -> None:
    register(MODEL)
    moment = dt.datetime.now(dt.UTC)
    inject(observations(200, seed=1, error_share=0.1), moment - dt.timedelta(minutes=3))
    inject(observations(50, version="2", arm="canary", seed=2), moment)
    rollup.roll_up_minutes(moment)

    full = browser.get(f"/dashboard/models/{MODEL}/?window=1h")
    partial = browser.get(f"/dashboard/models/{MODEL}/?window=5m", headers=HTMX)

    assert full.status_code == partial.status_code == 200
    assert b"<html" not in partial.content
    assert b'id="model-stats"' in partial.content
    assert f'hx-get="/dashboard/models/{MODEL}/?window=5m"'.encode() in partial.content
    summary = embedded(partial.content, "model-summary")
    expected = queries.summary("5m", model=MODEL)
    assert summary["summary"]["requests"] == 250
    assert summary["summary"]["p99"] == pytest.approx(expected.p99, rel=1e-3)
    assert set(summary["versions"]) == {"1", "2"}
    charts = embedded(full.content, "charts-v1")
    assert len(charts["timeline"]["x"]) == 60
    assert sum(charts["batch_sizes"]["counts"]) == summary["versions"]["1"]["requests"] - sum(
        summary["versions"]["1"]["errors"].values()
    )
    for kind in ("latency", "throughput", "errors", "batches", "queue"):
        assert f'data-chart="{kind}" data-source="charts-v1"'.encode() in full.content
    # Both versions on one chart, one scale (charts.js draws it from their timelines).
    assert b'data-chart="compare" data-metric="p95" data-sources="charts-v2 charts-v1 " data-labels="v2|v1"' in (
        full.content
    )
    assert b"No errors in the last 1h." in full.content  # version 2 had none


def test_workers_page_without_workers_says_how_to_start_one(browser: Client) -> None:
    response = browser.get("/dashboard/workers/")

    assert response.status_code == 200
    assert b"No worker is alive." in response.content
    assert b"celery -A controlplane worker" in response.content


def test_workers_page_lists_live_workers_and_what_they_serve(browser: Client, redis_client: redis.Redis) -> None:
    info = {
        "host": "gpu-1",
        "pid": 42,
        "serving": {"7": {"model": MODEL, "version": 3, "provider": "CUDAExecutionProvider"}},
        "memory_bytes": 3 * 1024**2,
        "batches": 1234,
    }
    record_heartbeat(redis_client, redis_keys(), "w1@gpu-1", info, float(settings.TURNOUT["WORKER_TTL_SECONDS"]))

    full = browser.get("/dashboard/workers/")
    partial = browser.get("/dashboard/workers/", headers=HTMX)

    assert b"<html" in full.content
    assert b"<html" not in partial.content
    assert b'hx-trigger="every 5s"' in partial.content
    assert b"1 worker alive." in partial.content
    assert b"w1@gpu-1" in partial.content
    assert b"CUDAExecutionProvider" in partial.content
    assert b"3.0\xc2\xa0MB" in partial.content
    assert b"1234" in partial.content
    assert f'href="/dashboard/models/{MODEL}/"'.encode() in partial.content


def test_model_page_shows_each_versions_response_cache_hit_ratio(
    browser: Client, register: Callable[..., Any], inject: Callable[..., Any]
) -> None:
    register(MODEL)
    moment = dt.datetime.now(dt.UTC)
    cached = observations(40, seed=3)
    for index, obs in enumerate(cached):
        obs.cache = "hit" if index % 4 else "miss"  # 30 hits of 40 look-ups
        if obs.cache == "hit":
            obs.queue_ms = obs.compute_ms = 0.0
            obs.batch_size = 0
    inject(cached, moment)
    inject(observations(10, version="2", seed=4), moment)  # no cache: no ratio
    rollup.roll_up_minutes(moment)

    page = browser.get(f"/dashboard/models/{MODEL}/?window=5m", headers=HTMX).content.decode()

    assert '<th class="num" title="Share of response-cache look-ups' in page
    # the cache column, before the cost column that ends the row
    cells = dict(
        re.findall(
            r'<tr><td><a href="#version-(\d)">.*?<td class="num">([^<]*)</td>\s*<td class="num">[^<]*</td>\s*</tr>',
            page,
            re.S,
        )
    )
    assert cells == {"1": "75.0 %", "2": "—"}  # the last cell of each version's row
    assert "Answered from the response cache: 30 (75.0 % of look-ups" in page
    summary = embedded(page.encode(), "model-summary")
    assert summary["versions"]["1"]["cache_hit_ratio"] == 0.75
    assert sum(summary["versions"]["1"]["batch_sizes"].values()) == 10  # hits ran in no batch
