from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The Open Inference Protocol (V2) gateway: a plain ASGI application beside Django (gateway/app.py)."""

    name = "gateway"
    label = "gateway"
    verbose_name = "Inference gateway"
