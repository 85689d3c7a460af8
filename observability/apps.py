from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    """Prometheus metrics, per-minute latency histograms and their rollups, the dashboard's figures."""

    name = "observability"
    label = "observability"
    verbose_name = "Observability"
