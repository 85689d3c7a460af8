"""Idempotent demo data for the quick start: an admin login and the demo models,
validated and serving as `production`. Running it twice creates nothing twice."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts import keyformat
from accounts import services as key_services
from accounts.models import ApiKey
from ops.demo_pipeline import DemoFailed, register_sentiment
from registry import demo_models, services
from registry.fallback_services import set_fallback
from registry.models import RegisteredModel, VersionStatus

DEMO_MODELS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "mlp-small": ("A small MLP: FP32 [batch, 64] -> 256 -> 256 -> 10.", demo_models.build_mlp_small),
    "iris": (
        "Logistic regression on the iris data set (scikit-learn via skl2onnx).",
        demo_models.build_iris_classifier,
    ),
}

CREDENTIALS_FILE = Path(settings.BASE_DIR) / "var" / "demo-credentials.json"

# Defensive serving on the demo classifier, set when the demo creates it (an operator's later change stays):
# deterministic, so repeats come from the response cache; a failure gets the last good answer, then a person.
DEMO_CACHE_TTL_SECONDS = 300
DEMO_FALLBACK = {"chain": [{"kind": "cache", "ttl_seconds": 86400}, {"kind": "human_review"}]}
DEFENDED = "iris"


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
        for name, (description, build) in DEMO_MODELS.items():
            self._register(name, description, build(), user)
        try:
            pipeline, created = register_sentiment(user)
        except DemoFailed as failure:
            self.stderr.write(f"demo pipeline sentiment: {failure}")
        else:
            state = "registered" if created else "already registered"
            self.stdout.write(f"demo pipeline {pipeline.model.name}: v{pipeline.number} {state}")
        credentials = self._demo_key(user, credentials)
        base = str(settings.TURNOUT["PUBLIC_URL"]).rstrip("/")
        body = '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
        curl = (
            f"curl -s -H 'Authorization: Bearer {credentials['api_key']}' -H 'Content-Type: application/json' "
            f"-d '{body}' {base}/v2/models/iris/infer"
        )
        text = '{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","data":["I loved it","boring and awful"]}]}'
        sentiment = (
            f"curl -s -H 'Authorization: Bearer {credentials['api_key']}' -H 'Content-Type: application/json' "
            f"-d '{text}' {base}/v2/models/sentiment/infer"
        )
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Turnout is starting.",
                    f"  Dashboard:   {base}/   (user {credentials['username']}, password {credentials['password']})",
                    f"  API docs:    {base}/api/docs/ (management), {base}/api/inference/docs/ (inference)",
                    f"  gRPC:        {settings.TURNOUT['GRPC_BIND']} (inference.GRPCInferenceService)",
                    f"  Demo API key: {credentials['api_key']}",
                    f"  Readiness:   curl -s {base}/v2/health/ready",
                    f"  Inference:   {curl}",
                    f"  Pipeline:    {sentiment}",
                    f"  Defensive:   {DEFENDED} answers a repeated input from its response cache (x-turnout-cache: hit,"
                    " add -i to the curl above); if it fails, its last good answer, then human review answers",
                    "  Stop everything with Ctrl-C.",
                    "",
                ]
            )
        )

    def _register(self, name: str, description: str, artifact: bytes, user: Any) -> None:
        model = RegisteredModel.objects.filter(name=name).first()
        new = model is None
        if model is None:
            model = services.create_model(name=name, description=description, tags=["demo"], actor=user)
        result = services.upload_version(model, io.BytesIO(artifact), actor=user, description=description)
        version = result.version
        # Validated here rather than by a worker: it must be ready before workers start.
        version = services.validate_now(version)
        if version.status != VersionStatus.READY:
            self.stderr.write(f"demo model {name} v{version.number} failed validation: {version.status_reason}")
            return
        if services.serving_version(model) is None:
            services.set_alias(model, services.PRODUCTION, version, actor=user)
        if new and name == DEFENDED:
            services.update_version(version, actor=user, cache_ttl_seconds=DEMO_CACHE_TTL_SECONDS)
            set_fallback(model, DEMO_FALLBACK, actor=user)
        state = "registered" if result.created else "already registered"
        self.stdout.write(f"demo model {name}: v{version.number} {state}, production -> v{version.number}")

    def _demo_key(self, user: Any, credentials: dict[str, str]) -> dict[str, str]:
        """The demo key, created once; a new one only if it was revoked, expired or deleted."""
        parsed = keyformat.parse(credentials.get("api_key", ""))
        if parsed is not None:
            existing = ApiKey.objects.filter(public_id=parsed.public_id, user=user).first()
            if existing is not None and existing.status == "active":
                return credentials
        _, secret = key_services.create_key(
            user, name="demo", model_patterns=["*"], actions=["infer", "read", "manage"]
        )
        credentials = {**credentials, "api_key": secret}
        self._save(credentials)
        return credentials

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(CREDENTIALS_FILE.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, credentials: dict[str, str]) -> None:
        CREDENTIALS_FILE.parent.mkdir(parents=True, exist_ok=True)
        CREDENTIALS_FILE.write_text(json.dumps(credentials, indent=2))
        CREDENTIALS_FILE.chmod(0o600)
