"""Where the client finds its server and key.

In order, the first that gives a value wins:
1. the command line (`--url`, `--api-key`), or the arguments of `Client(...)`;
2. the profile named by `--profile` or `TURNOUT_PROFILE`, in the profile file;
3. the environment: `TURNOUT_URL`, `TURNOUT_API_KEY`;
4. the profile `default` in the profile file, if there is one.

The profile file is `$TURNOUT_CONFIG`, else `$XDG_CONFIG_HOME/turnout/profiles.toml`
(`~/.config/turnout/profiles.toml`). Each profile is a table:

    [default]
    url = "https://turnout.example.com"
    api_key = "tk_live_..."

    [staging]
    url = "https://staging.turnout.example.com"
    api_key_env = "STAGING_TURNOUT_KEY"   # read the key from this variable instead

A key in a file is a secret: the file should be readable by its owner only, and the
client says so when it is not.
"""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnout_client.errors import ConfigError

DEFAULT_PROFILE = "default"
PROFILE_KEYS = {"url", "api_key", "api_key_env", "timeout"}


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str | None
    timeout: float = 30.0
    profile: str | None = None


def profile_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("TURNOUT_CONFIG"):
        return Path(env["TURNOUT_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "turnout" / "profiles.toml"


def read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the profile file {path}: {exc}") from None
    profiles: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{name}' must be a table ([{name}]) of url, api_key, api_key_env, timeout")
        unknown = sorted(set(table) - PROFILE_KEYS)
        if unknown:
            raise ConfigError(f"{path}: profile '{name}' has unknown settings {unknown}; known: {sorted(PROFILE_KEYS)}")
        profiles[name] = table
    if any("api_key" in p for p in profiles.values()) and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {path} holds an API key and others may read it; chmod 600 it", file=sys.stderr)
    return profiles


def _from_profile(table: dict[str, Any], env: dict[str, str], name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "url" in table:
        found["url"] = str(table["url"])
    if "api_key" in table:
        found["api_key"] = str(table["api_key"])
    elif "api_key_env" in table:
        variable = str(table["api_key_env"])
        if not env.get(variable):
            raise ConfigError(f"profile '{name}' reads its key from ${variable}, which is not set")
        found["api_key"] = env[variable]
    if "timeout" in table:
        try:
            found["timeout"] = float(table["timeout"])
        except (TypeError, ValueError):
            raise ConfigError(f"profile '{name}': timeout must be a number of seconds") from None
    return found


def resolve(
    *,
    url: str | None = None,
    api_key: str | None = None,
    profile: str | None = None,
    timeout: float | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """The settings to use, from arguments, profile file and environment (see the module's docstring)."""
    env = dict(os.environ if environ is None else environ)
    profile = profile or env.get("TURNOUT_PROFILE") or None
    path = profile_path(env)
    profiles = read_profiles(path)
    layers: list[dict[str, Any]] = [{"url": url, "api_key": api_key, "timeout": timeout}]
    if profile is not None:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"no profile '{profile}' in {path} (profiles there: {known})")
        layers.append(_from_profile(profiles[profile], env, profile))
    layers.append({"url": env.get("TURNOUT_URL"), "api_key": env.get("TURNOUT_API_KEY")})
    if profile is None and DEFAULT_PROFILE in profiles:
        layers.append(_from_profile(profiles[DEFAULT_PROFILE], env, DEFAULT_PROFILE))

    def first(name: str) -> Any:
        return next((layer[name] for layer in layers if layer.get(name) not in (None, "")), None)

    chosen_url = first("url")
    if not chosen_url:
        raise ConfigError(f"no server: set TURNOUT_URL, pass --url, or add a profile to {path}")
    if not str(chosen_url).startswith(("http://", "https://")):
        raise ConfigError(f"the server URL must start with http:// or https://, not {chosen_url!r}")
    return Settings(
        url=str(chosen_url).rstrip("/"),
        api_key=first("api_key"),
        timeout=float(first("timeout") or 30.0),
        profile=profile,
    )
