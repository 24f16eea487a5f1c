"""Users, tokens and the audit trail as the API uses them: who a token is, what it may do.

:class:`Accounts` judges a presented token against its row, read again at every
request, and keeps users and tokens; the rules it applies are the pure ones of
:mod:`ferry.auth.tokens` and :mod:`ferry.auth.roles`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ferry import validate
from ferry.auth import tokens
from ferry.auth.model import AuditEntry, Principal, Token, User
from ferry.auth.roles import Role, Rule, may_act_for, others_refusal
from ferry.errors import Forbidden, InputError, NotAuthenticated
from ferry.store.accounts import AccountRecords

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"
FILE_TOKEN_LABEL = "FERRY_HOME/token"


class Accounts:
    def __init__(self, records: AccountRecords,
                 clock: Callable[[], float] = time.time) -> None:
        self._records = records
        self._clock = clock

    def now(self) -> float:
        """The time tokens expire by and the audit trail is written in."""
        return self._clock()

    # -- the first admin ------------------------------------------------------
    def adopt_first_token(self, token: str) -> bool:
        """With no user yet, make user ``admin`` and ``token`` (the install's token file)
        its token; True if it did. The file's token lives FILE_TOKEN_DAYS from now."""
        if self._records.any_user():
            return False
        now = self._clock()
        try:
            self._records.add_user(User(FIRST_ADMIN, Role.ADMIN, now))
        except InputError:
            return False  # another server sharing the database made it a moment ago
        self._records.add_token(
            Token(tokens.new_id(), FIRST_ADMIN, FILE_TOKEN_LABEL, now,
                  tokens.expiry(now, tokens.FILE_TOKEN_DAYS)), tokens.token_hash(token))
        log.info("user %s made, with the token of %s as its token", FIRST_ADMIN,
                 FILE_TOKEN_LABEL)
        return True

    # -- who a request is -------------------------------------------------------
    def authenticate(self, presented: str | None) -> Principal:
        """The user a bearer token belongs to; NotAuthenticated saying why not."""
        if not presented:
            raise NotAuthenticated("missing API token: send 'Authorization: Bearer TOKEN'")
        parsed = tokens.parse(presented)
        if parsed is None:
            raise NotAuthenticated("invalid API token")
        found = self._records.token_row(parsed.id, parsed.hash)
        if found is None or not tokens.hashes_match(found[1], parsed.hash):
            raise NotAuthenticated("invalid API token")
        token, _hash, role = found
        now = self._clock()
        why = tokens.why_unusable(token.expires_at, token.revoked_at, now)
        if why is not None:
            raise NotAuthenticated(f"API token {token.id} is {why}")
        if tokens.due_touch(token.last_used_at, now):
            self._records.touch(token.id, now)
        return Principal(token.user, role, token.id)

    # -- users --------------------------------------------------------------------
    def add_user(self, name: str, role: Role) -> User:
        user = User(validate.user_name(name), role, self._clock())
        self._records.add_user(user)
        return user

    def users(self) -> list[User]:
        return self._records.users()

    def remove_user(self, name: str) -> None:
        self._records.remove_user(name)

    # -- tokens -------------------------------------------------------------------
    def create_token(self, user: str, label: str, days: int | None) -> tuple[Token, str]:
        """A new token of ``user``: the record, and the token itself (shown once)."""
        now = self._clock()
        try:
            expires = tokens.expiry(now, days)
        except ValueError as err:
            raise InputError(str(err)) from None
        token_id, secret = tokens.new_token()
        record = Token(token_id, user, label, now, expires)
        self._records.add_token(record, tokens.token_hash(secret))
        return record, secret

    def tokens(self, user: str | None = None) -> list[Token]:
        return self._records.tokens(user)

    def token(self, token_id: str) -> Token:
        return self._records.token(token_id)

    def revoke(self, token_id: str) -> Token:
        return self._records.revoke(token_id, self._clock())

    # -- the audit trail ------------------------------------------------------------
    def record(self, entry: AuditEntry) -> None:
        self._records.add_audit(entry)

    def audit(self, user: str | None = None, since: float | None = None,
              limit: int = 100) -> list[AuditEntry]:
        return self._records.audit(user, since, limit)


def require_own(principal: Principal, owner: str, rule: Rule) -> None:
    """Refuse ``principal`` acting on ``owner``'s tokens unless they are its own or it is
    an admin."""
    if not may_act_for(principal.user, principal.role, owner):
        raise Forbidden(others_refusal(principal.user, principal.role, rule))
