"""The API key format. No Django imports.

    tk_live_<public id: 12>_<secret: 32><checksum: 6>      (base62)

- The `tk_live_` / `tk_test_` prefix lets secret scanners (GitHub's, gitleaks)
  recognise a leaked key.
- The public id names the key in lists, logs and rate-limit keys; it is not secret.
- The secret carries about 190 bits of entropy.
- The checksum (CRC32 of everything before it) rejects a mistyped or truncated
  key before any cache or database look-up.
Only an HMAC-SHA256 of the whole key, with a server-side pepper, is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUBLIC_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_PATTERN = re.compile(
    rf"^tk_(live|test)_([0-9A-Za-z]{{{PUBLIC_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})$"
)


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _base62(number: int, length: int) -> str:
    digits = []
    for _ in range(length):
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))


def checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), CHECKSUM_LENGTH)


@dataclass(frozen=True)
class ParsedKey:
    environment: str
    public_id: str
    full: str


def new_public_id() -> str:
    return _random(PUBLIC_LENGTH)


def compose(public_id: str, environment: str = "live") -> str:
    """A new secret for `public_id`, as the full key string (shown once)."""
    body = f"tk_{environment}_{public_id}_{_random(SECRET_LENGTH)}"
    return body + checksum(body)


def parse(key: str) -> ParsedKey | None:
    """The key's parts if it is well formed and its checksum matches; None otherwise."""
    match = KEY_PATTERN.match(key)
    if match is None:
        return None
    body = key[:-CHECKSUM_LENGTH]
    if not hmac.compare_digest(checksum(body), match.group(4)):
        return None
    return ParsedKey(environment=match.group(1), public_id=match.group(2), full=key)


def digest(key: str, pepper: bytes) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def display_prefix(public_id: str, environment: str = "live") -> str:
    """What lists show: enough to recognise a key, nothing that authenticates."""
    return f"tk_{environment}_{public_id}_…"
