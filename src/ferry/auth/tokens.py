"""API tokens: their format, how they are stored, and when one stops working.

A token reads ``ferry.<id>.<secret>``: the id finds its row with one indexed
look-up (and names the token in the audit trail when the secret is wrong); the
secret is 256 random bits. The database holds only a hash of the whole token.

SHA-256 without salt or stretching is enough here, and deliberately so: salts
and slow hashes (bcrypt, scrypt) defend *guessable* secrets such as passwords
against a stolen table. A 256-bit random secret cannot be guessed whatever the
hash, and a slow hash would only cost every API request its time.

The token a ferry older than users wrote to ``FERRY_HOME/token`` has no id: it is
found by its hash, which the tokens table indexes too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

PREFIX = "ferry"
DEFAULT_DAYS = 90
MAX_DAYS = 365
DAY_S = 86400.0
# The token file of an install (new, or upgraded from the single shared token) is the
# first admin's: it lives as long as any token may, and the admin replaces it in time.
FILE_TOKEN_DAYS = MAX_DAYS
MAX_TOKEN_CHARS = 256  # a longer Authorization value is refused before it is hashed
_ID_BYTES = 6
_SECRET_BYTES = 32
_FORMAT = re.compile(rf"{PREFIX}\.([0-9a-f]{{{2 * _ID_BYTES}}})\.([A-Za-z0-9_-]{{43}})")
# A token of the older format: ensure_token wrote token_urlsafe output, but FERRY_TOKEN
# may have been set to anything printable.
_LEGACY = re.compile(r"[\x21-\x7e]+")
# last_used_at is written at most this often per token: not a write per request.
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class Presented:
    """A token as a request presented it: its id when it has one, and its hash."""

    id: str | None
    hash: str


def new_token() -> tuple[str, str]:
    """A new token: (its id, the whole token the user is shown once)."""
    token_id = secrets.token_hex(_ID_BYTES)
    return token_id, f"{PREFIX}.{token_id}.{secrets.token_urlsafe(_SECRET_BYTES)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id() -> str:
    """An id for a token of the older format, which carries none."""
    return secrets.token_hex(_ID_BYTES)


def parse(token: str) -> Presented | None:
    """The presented token, or None when it cannot be a token of either format."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    found = _FORMAT.fullmatch(token)
    if found is not None:
        return Presented(found.group(1), token_hash(token))
    if _LEGACY.fullmatch(token):
        return Presented(None, token_hash(token))
    return None


def token_id_of(token: str) -> str | None:
    """The id a presented token claims, for the audit trail; None if it claims none."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    found = _FORMAT.fullmatch(token)
    return found.group(1) if found else None


def hashes_match(stored: str, presented: str) -> bool:
    return secrets.compare_digest(stored.encode(), presented.encode())


def expiry(now: float, days: int | None) -> float:
    """When a token made at ``now`` for ``days`` (None: the default) stops working."""
    wanted = DEFAULT_DAYS if days is None else days
    if not 1 <= wanted <= MAX_DAYS:
        raise ValueError(f"a token lives 1 to {MAX_DAYS} days, not {wanted}")
    return now + wanted * DAY_S


def why_unusable(expires_at: float, revoked_at: float | None, now: float) -> str | None:
    """Why a token no longer works (revoked, expired), or None if it works."""
    if revoked_at is not None:
        return "revoked"
    if now >= expires_at:
        return "expired"
    return None


def due_touch(last_used_at: float | None, now: float) -> bool:
    return last_used_at is None or now - last_used_at >= TOUCH_EVERY_S
