"""The `turnout` command's configuration, errors and exit statuses, and its key and registry
commands, against the management API of a live server. Every test checks the exit status and
re-reads the database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts import keyformat, services
from accounts.models import ApiKey
from registry.models import RegisteredModel
from tests.clients.conftest import Ran, cli_env, run_turnout
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads on its own connection

Turnout = Callable[..., Ran]


# --- Negative cases first -------------------------------------------------------------------------------------------


def test_a_bad_command_line_exits_2_before_any_request(turnout: Turnout, owner: Any) -> None:
    assert turnout("versions", "set", "fraud", "1", "max_batch_size").code == 2
    assert turnout("versions", "show", "fraud", "one").code == 2
    assert turnout("infer", "fraud").code == 2  # no inputs
    assert turnout("rollouts", "start", "canary", "fraud", "2", "--steps", "5,x").code == 2
    assert turnout("no-such-command").code == 2
    assert not RegisteredModel.objects.exists()


def test_without_a_server_or_with_an_unknown_profile_it_exits_2_saying_what_to_set(tmp_path: Path) -> None:
    nothing = run_turnout(["models", "list"], cli_env(tmp_path))
    unknown = run_turnout(["--profile", "prod", "models", "list"], cli_env(tmp_path, TURNOUT_URL="http://x"))
    bad_url = run_turnout(["models", "list"], cli_env(tmp_path, TURNOUT_URL="turnout.example.com"))

    assert nothing.code == unknown.code == bad_url.code == 2
    assert "no server: set TURNOUT_URL" in nothing.err
    assert "no profile 'prod'" in unknown.err
    assert "must start with http://" in bad_url.err


def test_an_unreachable_server_exits_7(tmp_path: Path) -> None:
    ran = run_turnout(["models", "list"], cli_env(tmp_path, TURNOUT_URL=f"http://127.0.0.1:{free_port()}"))

    assert ran.code == 7
    assert "cannot reach" in ran.err


def test_a_revoked_key_a_key_without_manage_and_an_unknown_model_exit_4(turnout: Turnout, owner: Any) -> None:
    revoked_key, revoked = services.create_key(owner, name="gone", model_patterns=["*"], actions=["manage"])
    services.revoke_key(revoked_key, actor=owner)
    _, reader = services.create_key(owner, name="reader", model_patterns=["*"], actions=["read", "infer"])

    wrong = turnout("models", "list", TURNOUT_API_KEY=revoked)
    weak = turnout("models", "list", TURNOUT_API_KEY=reader)
    missing = turnout("--json", "models", "show", "nope")

    assert wrong.code == weak.code == missing.code == 4
    assert "invalid, expired or revoked API key (HTTP 401" in wrong.err
    assert "this key lacks the manage scope" in weak.err
    error = json.loads(missing.err)
    assert (error["status"], error["exit_code"]) == (404, 4)
    assert missing.out == ""


def test_a_refused_request_exits_3_with_the_apis_reason(turnout: Turnout) -> None:
    ran = turnout("models", "create", "Not A Slug")

    assert ran.code == 3
    assert ran.err.startswith("error: name:")
    assert "HTTP 400" in ran.err
    assert not RegisteredModel.objects.exists()


def test_a_revoked_key_cannot_be_rotated_from_the_cli(turnout: Turnout, owner: Any) -> None:
    key, _ = services.create_key(owner, name="old", model_patterns=["*"], actions=["read"])
    services.revoke_key(key, actor=owner)

    ran = turnout("keys", "rotate", key.public_id)

    assert ran.code == 3
    assert "a revoked key cannot be rotated" in ran.err
    assert ApiKey.objects.get(pk=key.pk).digest == key.digest


# --- Configuration --------------------------------------------------------------------------------------------------


def test_a_named_profile_wins_over_the_environment_and_the_default_profile_fills_in(
    live_server: Any, owner_key: str, tmp_path: Path
) -> None:
    config = tmp_path / "config" / "turnout"
    config.mkdir(parents=True)
    (config / "profiles.toml").write_text(
        f'[default]\nurl = "{live_server.url}"\napi_key_env = "CI_KEY"\n\n'
        f'[ci]\nurl = "{live_server.url}"\napi_key = "{owner_key}"\n'
    )
    (config / "profiles.toml").chmod(0o600)
    unreachable = f"http://127.0.0.1:{free_port()}"

    named = run_turnout(["--profile", "ci", "--json", "keys", "list"], cli_env(tmp_path, TURNOUT_URL=unreachable))
    by_default = run_turnout(["--json", "keys", "list"], cli_env(tmp_path, CI_KEY=owner_key))
    env_first = run_turnout(["keys", "list"], cli_env(tmp_path, CI_KEY=owner_key, TURNOUT_URL=unreachable))

    assert (named.code, by_default.code) == (0, 0), (named.err, by_default.err)
    assert [k["name"] for k in named.json()] == [k["name"] for k in by_default.json()] == ["ci"]
    assert env_first.code == 7  # the environment beats the default profile
    assert "warning" not in named.err


# --- Keys -----------------------------------------------------------------------------------------------------------


def test_keys_are_created_listed_rotated_and_revoked_from_the_cli(turnout: Turnout, owner: Any) -> None:
    typo = turnout("keys", "create", "scoring", "--model", "fraud-*", "--action", "infer")
    assert typo.code == 3  # an API refusal: no model is called fraud-* yet
    assert "'fraud-*' matches no model" in typo.err
    assert not ApiKey.objects.filter(user=owner, name="scoring").exists()

    created = turnout("keys", "create", "scoring", "--model", "fraud-*", "--action", "infer", "--future-models")

    assert created.code == 0, created.err
    secret = created.out.strip()  # only the secret on stdout
    key = ApiKey.objects.get(user=owner, name="scoring")
    assert keyformat.digest(secret, services.pepper()) == key.digest
    assert (key.model_patterns, key.actions) == (["fraud-*"], ["infer"])
    assert "store this secret now" in created.err

    listed = turnout("--json", "keys", "list", "--status", "active")
    assert listed.code == 0
    assert {k["name"] for k in listed.json()} == {"ci", "scoring"}
    assert all("secret" not in k for k in listed.json())

    rotated = turnout("--json", "keys", "rotate", key.public_id, "--grace", "0")
    assert rotated.code == 0
    new_secret = rotated.json()["secret"]
    key.refresh_from_db()
    assert keyformat.digest(new_secret, services.pepper()) == key.digest
    assert key.previous_digest == ""

    revoked = turnout("keys", "revoke", key.public_id)
    assert revoked.code == 0
    assert f"key {key.public_id} (scoring): revoked" in revoked.out
    key.refresh_from_db()
    assert key.status == "revoked"


def test_a_non_admin_cannot_manage_plans_from_the_cli(turnout: Turnout) -> None:
    ran = turnout("plans", "create", "gold", "requests_per_window=1000")

    assert ran.code == 4
    assert "Only an admin may create, change or delete plans." in ran.err


# --- Registry -------------------------------------------------------------------------------------------------------


def test_a_model_is_created_shown_and_given_a_fallback_chain(turnout: Turnout, tmp_path: Path) -> None:
    assert turnout("models", "create", "fraud", "--description", "card fraud", "--tag", "tabular").code == 0
    model = RegisteredModel.objects.get(name="fraud")
    assert (model.description, model.tags, model.owner.username) == ("card fraud", ["tabular"], "olga")

    shown = turnout("models", "show", "fraud")
    listed = turnout("--json", "models", "list", "--tag", "tabular")
    assert shown.code == listed.code == 0
    assert "card fraud" in shown.out
    assert [m["name"] for m in listed.json()] == ["fraud"]

    bad_chain = tmp_path / "chain.json"
    bad_chain.write_text(json.dumps({"chain": [{"kind": "oracle"}]}))
    refused = turnout("models", "fallback", "fraud", str(bad_chain))
    chain = {"on": ["timeout"], "chain": [{"kind": "human_review", "status": 202}]}
    from_stdin = turnout("models", "fallback", "fraud", "-", stdin=json.dumps(chain))

    assert refused.code == 3
    assert "fallback" in refused.err
    assert from_stdin.code == 0, from_stdin.err
    model.refresh_from_db()
    assert model.fallback["chain"] == [{"kind": "human_review", "status": 202}]

    assert turnout("models", "fallback", "fraud", "--clear").code == 0
    model.refresh_from_db()
    assert model.fallback is None


def test_an_admin_manages_plans_and_a_keys_limits_from_the_cli(turnout: Turnout, admin: Any, owner: Any) -> None:
    _, admin_secret = services.create_key(admin, name="ops", model_patterns=["*"], actions=["manage"])
    ci_key = ApiKey.objects.get(user=owner, name="ci")

    created = turnout("plans", "create", "gold", "requests_per_window=1000", "burst=2000", "priority=high",
                      TURNOUT_API_KEY=admin_secret)  # fmt: skip
    limited = turnout("keys", "set-limits", ci_key.public_id, "plan=gold", "daily_quota=5000",
                      TURNOUT_API_KEY=admin_secret)  # fmt: skip
    everyone = turnout("--json", "keys", "list", "--owner", "olga", TURNOUT_API_KEY=admin_secret)

    assert (created.code, limited.code, everyone.code) == (0, 0, 0), (created.err, limited.err, everyone.err)
    assert "gold" in created.out
    ci_key.refresh_from_db()
    assert (ci_key.plan.name if ci_key.plan else None, ci_key.daily_quota) == ("gold", 5000)
    assert [k["id"] for k in everyone.json()] == [ci_key.public_id]
    record = services.key_record(ci_key.public_id)
    assert record is not None
    assert (record.policy.limit, record.priority) == (1000, "high")

    in_use = turnout("plans", "delete", "gold", TURNOUT_API_KEY=admin_secret)
    assert in_use.code == 3
    assert "is the plan of 1 key(s)" in in_use.err
