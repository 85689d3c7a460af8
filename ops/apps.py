from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations: service checks, the quick-start demo and the benchmark's registration."""

    name = "ops"
    label = "ops"
    verbose_name = "Operations"
