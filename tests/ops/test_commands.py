"""The quick-start management commands: check_services, bootstrap_demo."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey
from registry.models import Alias, ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db


def test_check_services_names_the_unreachable_service(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    err = StringIO()

    with pytest.raises(CommandError, match="Redis unreachable"):
        call_command("check_services", stderr=err, stdout=StringIO())

    assert "redis-server --daemonize yes" in err.getvalue()
    assert "docker compose up -d postgres redis" in err.getvalue()


def test_bootstrap_demo_is_idempotent(django_user_model: Any, tmp_path: Path, monkeypatch: Any, settings: Any) -> None:
    from ops.management.commands import bootstrap_demo

    monkeypatch.setattr(bootstrap_demo, "CREDENTIALS_FILE", tmp_path / "creds.json")
    backend = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": backend}
    first, second = StringIO(), StringIO()

    call_command("bootstrap_demo", stdout=first)
    call_command("bootstrap_demo", stdout=second)

    assert django_user_model.objects.filter(username="admin").count() == 1
    assert ApiKey.objects.count() == 1  # the demo key, created once
    assert RegisteredModel.objects.filter(name__in=["mlp-small", "iris"]).count() == 2
    # the sentiment pipeline (one version, in production) and its three stage models
    assert RegisteredModel.objects.get(name="sentiment").kind == "pipeline"
    assert ModelVersion.objects.filter(status="ready").count() == 2 + 1 + 3
    assert Alias.objects.get(model__name="sentiment", name="production").version.number == 1
    assert "demo pipeline sentiment: v1 registered" in first.getvalue()
    assert "demo pipeline sentiment: v1 already registered" in second.getvalue()
    assert "/v2/models/sentiment/infer" in second.getvalue()
    # iris, deterministic, is the demo of defensive serving: a response cache and a fallback chain
    iris = RegisteredModel.objects.get(name="iris")
    assert iris.fallback["chain"] == [{"kind": "cache", "ttl_seconds": 86400}, {"kind": "human_review", "status": 200}]
    assert ModelVersion.objects.get(model=iris, number=1).cache_ttl_seconds == 300
    assert "x-turnout-cache: hit" in first.getvalue()
    saved = json.loads((tmp_path / "creds.json").read_text())
    assert saved["password"] in first.getvalue()
    assert saved["api_key"] in second.getvalue()
    assert saved["password"] in second.getvalue()
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(saved["password"])
