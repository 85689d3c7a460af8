"""Idempotent demo data for the quick start: an admin login (and, as they land,
demo models and an API key). Running it twice creates nothing twice."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

CREDENTIALS_FILE = Path(settings.BASE_DIR) / "var" / "demo-credentials.json"


class Command(BaseCommand):
    help = "Create the demo admin user (once) and print how to log in and call the API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        credentials = self._load()
        username = options["username"]
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": True, "email": f"{username}@localhost"}
            )
            if created or credentials.get("username") != username:
                # Only a user we just created (or one whose password we never recorded) gets a new password.
                password = secrets.token_urlsafe(12)
                user.set_password(password)
                user.save(update_fields=["password"])
                credentials = {"username": username, "password": password}
                self._save(credentials)
        base = str(settings.TURNOUT["PUBLIC_URL"]).rstrip("/")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Turnout is starting.",
                    f"  Dashboard:   {base}/   (user {credentials['username']}, password {credentials['password']})",
                    f"  API docs:    {base}/api/docs/",
                    f"  Readiness:   curl -s {base}/v2/health/ready",
                    "  Stop everything with Ctrl-C.",
                    "",
                ]
            )
        )

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(CREDENTIALS_FILE.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, credentials: dict[str, str]) -> None:
        CREDENTIALS_FILE.parent.mkdir(parents=True, exist_ok=True)
        CREDENTIALS_FILE.write_text(json.dumps(credentials, indent=2))
        CREDENTIALS_FILE.chmod(0o600)
