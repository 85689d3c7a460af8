"""Write a local-development `.env` from `.env.example` (used by `make setup`).

Runs before Django can be configured, so it imports nothing from the project.
"""

import secrets
import sys
from pathlib import Path

OVERRIDES = {
    # The quick start runs over plain HTTP on localhost.
    "DEBUG": "true",
}
# Left unset (commented out), so they follow DEBUG: off while it is on (plain HTTP on
# localhost), strict as soon as it is turned off, and `manage.py check --deploy` passes.
FOLLOW_DEBUG = {
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
}


def main(source: str, target: str) -> None:
    out = []
    for line in Path(source).read_text().splitlines():
        key, sep, _ = line.partition("=")
        if sep and not line.startswith("#"):
            if key == "SECRET_KEY":
                line = f"SECRET_KEY={secrets.token_urlsafe(50)}"
            elif key in OVERRIDES:
                line = f"{key}={OVERRIDES[key]}"
            elif key in FOLLOW_DEBUG:
                line = f"# {line}  (unset: on when DEBUG is false, off when it is true)"
        out.append(line)
    Path(target).write_text("\n".join(out) + "\n")
    Path(target).chmod(0o600)
    print(f"wrote {target} (local development settings, DEBUG on, a fresh SECRET_KEY)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
