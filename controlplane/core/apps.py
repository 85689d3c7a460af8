from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Cross-cutting operations: service checks and the quick-start commands."""

    name = "controlplane.core"
    label = "core"
    verbose_name = "Core"
