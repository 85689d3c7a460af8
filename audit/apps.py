from django.apps import AppConfig


class AuditConfig(AppConfig):
    """An append-only log of every change in the control plane."""

    name = "audit"
    label = "audit"
    verbose_name = "Audit log"
