"""The monitoring files stay in step with the code: docs/metrics.md names every
metric, the Grafana dashboard queries only metrics that exist, the Prometheus,
KEDA and compose files say what docs/metrics.md says they do, and .env.example
lists every variable settings.py reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from dataplane.keys import RedisKeys
from dataplane.priority import LEVELS
from observability import metrics

ROOT = Path(__file__).resolve().parents[2]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def recorded() -> dict[str, str]:
    """Metric name -> type, for the metrics the processes record."""
    return {m._name: str(m._type) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


def scrape_time() -> set[str]:
    """Names of the families the collectors build at scrape time."""
    source = (ROOT / "observability/collectors.py").read_text()
    return set(re.findall(r'GaugeMetricFamily\(\s*"(turnout_[a-z_]+)"', source))


def exposed_names() -> set[str]:
    names = set(scrape_time())
    for name, kind in recorded().items():
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            names.add(name)
    return names


def test_the_metrics_are_what_the_docs_expect() -> None:
    assert len(recorded()) >= 7
    assert {"turnout_queue_depth", "turnout_workers_alive", "turnout_gpu_utilization_ratio"} <= scrape_time()


def test_docs_name_every_metric_as_it_is_exposed() -> None:
    docs = (ROOT / "docs/metrics.md").read_text()
    for name, kind in recorded().items():
        exposed = f"{name}_total" if kind == "counter" else name
        assert f"`{exposed}`" in docs, exposed
    for name in scrape_time():
        assert f"`{name}`" in docs, name


def dashboard() -> dict[str, Any]:
    return dict(json.loads((ROOT / "deploy/grafana/turnout-dashboard.json").read_text()))


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in expressions(value)]
    return []


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    exprs = expressions(dashboard()["panels"])
    used = {name for expr in exprs for name in re.findall(r"\bturnout_[a-z_]+", expr)}

    assert used <= exposed_names(), used - exposed_names()
    assert any(
        "histogram_quantile(0.99" in e and "turnout_inference_stage_seconds_bucket{" in e and 'stage="total"' in e
        for e in exprs
    )
    for needed in ("turnout_queue_depth", "turnout_workers_alive", "turnout_model_loaded", "turnout_gpu_"):
        assert any(needed in e for e in exprs), needed


def test_the_dashboard_and_its_data_source_agree() -> None:
    board = dashboard()
    provisioned = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/turnout.yaml").read_text())
    [source] = provisioned["datasources"]
    [variable] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]

    assert variable["current"]["value"] == source["uid"]
    assert source["url"] == "http://prometheus:9090"
    assert board["uid"] == "turnout-inference"


def test_prometheus_scrapes_the_web_processes_every_15_s_with_a_token_file() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "turnout-web"]

    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"].startswith("/")
    assert "credentials" not in job["authorization"]


def test_keda_scales_workers_on_the_request_streams_length() -> None:
    documents = [d for d in yaml.safe_load_all((ROOT / "deploy/keda/scaledobject.yaml").read_text()) if d]
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    triggers = [t for d in scaled for t in d["spec"]["triggers"] if t["type"] == "redis-streams"]

    assert triggers
    # One trigger per priority level's stream (dataplane/priority.py), or the normal level's alone.
    pattern = "|".join(
        re.escape(RedisKeys("turnout").request_stream(0, level)).replace("0", r"\d+") for level in LEVELS
    )
    for trigger in triggers:
        assert re.fullmatch(pattern, trigger["metadata"]["stream"]), trigger
        # The length (XLEN) stays true under overload; the consumer group's lag does not
        # (tests/ops/test_keda_signal.py shows both on a real stream).
        assert int(trigger["metadata"]["streamLength"]) > 0
        assert "lagCount" not in trigger["metadata"]
        assert "consumerGroup" not in trigger["metadata"]


def test_compose_gives_every_process_a_multiprocess_dir_and_the_monitoring_profile_mounts_existing_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]

    for name in ("web", "worker", "beat", "worker-gpu"):
        env = services[name]["environment"]
        assert env["PROMETHEUS_MULTIPROC_DIR"] in services[name]["tmpfs"], name
        assert "TURNOUT_METRICS_TOKEN" in env, name
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    assert "web" in services["web"]["environment"]["ALLOWED_HOSTS"]


def test_compose_sends_traces_to_the_monitoring_profiles_jaeger_and_leaves_tracing_off() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    jaeger = services["jaeger"]

    assert jaeger["profiles"] == ["monitoring"]
    image, _, tag = jaeger["image"].rpartition(":")
    assert image.endswith("jaegertracing/jaeger")
    assert re.fullmatch(r"2\.\d+\.\d+", tag), "a pinned 2.x release"
    assert {"127.0.0.1:16686:16686", "127.0.0.1:4318:4318"} <= set(jaeger["ports"])
    for name in ("web", "worker", "worker-gpu"):
        env = services[name]["environment"]
        assert env["TURNOUT_TRACING"] == "${TURNOUT_TRACING:-false}", name
        assert env["TURNOUT_TRACING_ENDPOINT"] == "${TURNOUT_TRACING_ENDPOINT:-http://jaeger:4318/v1/traces}", name


def test_env_example_lists_every_variable_settings_reads() -> None:
    source = (ROOT / "controlplane/settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|float|path|list|url)\("([A-Z0-9_]+)"', source))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', source))
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))

    assert len(read) > 40
    assert read - listed == set()
