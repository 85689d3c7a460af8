from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Self-service accounts, API keys, plans and rate limits."""

    name = "accounts"
    label = "accounts"
    verbose_name = "Accounts and API keys"

    def ready(self) -> None:
        # Connects the receivers on Django's User model; imported here because models load only now.
        from accounts import signals  # noqa: F401
