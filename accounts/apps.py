from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Self-service accounts, API keys, plans and rate limits."""

    name = "accounts"
    label = "accounts"
    verbose_name = "Accounts and API keys"
