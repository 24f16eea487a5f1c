"""Users, their tokens and the audit trail, as rows every ferry server reads.

Every authentication reads the token's row again (no cache): several servers
share one database, so a token revoked through one stops working on all of
them at their next request.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from ferry.auth.model import AuditEntry, Token, User
from ferry.auth.roles import Role
from ferry.errors import InputError, NotFound
from ferry.store.schema import audit_table, tokens_table, users_table

_TARGET_CHARS = 255
_PATH_CHARS = 1024
_OUTCOME_CHARS = 1000


class AccountRecords:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- users --------------------------------------------------------------
    def add_user(self, user: User) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(users_table).values(
                    name=user.name, role=user.role.value, created_at=user.created_at))
        except IntegrityError:
            raise InputError(f"user {user.name} already exists") from None

    def user(self, name: str) -> User:
        with self.engine.connect() as conn:
            row = conn.execute(select(users_table).where(users_table.c.name == name)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no user named {name}")
        return _user(row)

    def users(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users_table).order_by(users_table.c.name)).mappings()
            return [_user(r) for r in rows]

    def any_user(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(users_table.c.name).limit(1)).first() is not None

    def remove_user(self, name: str) -> None:
        """Remove a user and their tokens; refused when it is the last admin."""
        with self.engine.begin() as conn:
            # Lock the admins' rows (PostgreSQL): two admins removing each other at once
            # must not both succeed and leave nobody who can add users again.
            query = select(users_table.c.name, users_table.c.role).where(
                (users_table.c.role == Role.ADMIN.value) | (users_table.c.name == name))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            rows = {r.name: Role(r.role) for r in conn.execute(query)}
            if name not in rows:
                raise NotFound(f"no user named {name}")
            admins = [n for n, role in rows.items() if role is Role.ADMIN]
            if admins == [name]:
                raise InputError(f"user {name} is the last admin: add another admin before "
                                 "removing this one")
            # Explicitly, not by the foreign key: SQLite enforces none unless asked to.
            conn.execute(delete(tokens_table).where(tokens_table.c.user_name == name))
            conn.execute(delete(users_table).where(users_table.c.name == name))

    # -- tokens -------------------------------------------------------------
    def add_token(self, token: Token, token_hash: str) -> None:
        with self.engine.begin() as conn:
            self._require_user(conn, token.user)
            conn.execute(insert(tokens_table).values(
                id=token.id, user_name=token.user, hash=token_hash, label=token.label,
                created_at=token.created_at, expires_at=token.expires_at))

    def token_row(self, token_id: str | None, token_hash: str) -> tuple[Token, str, Role] | None:
        """A token with its stored hash and its user's role (None: no such token, or its
        user is gone): by id when the token carries one, else by hash."""
        query = select(tokens_table, users_table.c.role).join(
            users_table, users_table.c.name == tokens_table.c.user_name)
        if token_id is not None:
            query = query.where(tokens_table.c.id == token_id)
        else:
            query = query.where(tokens_table.c.hash == token_hash)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return _token(row), row["hash"], Role(row["role"])

    def token(self, token_id: str) -> Token:
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens_table).where(tokens_table.c.id == token_id)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no token with id {token_id}")
        return _token(row)

    def tokens(self, user: str | None = None) -> list[Token]:
        query = select(tokens_table).order_by(tokens_table.c.user_name,
                                              tokens_table.c.created_at)
        if user is not None:
            query = query.where(tokens_table.c.user_name == user)
        with self.engine.connect() as conn:
            return [_token(r) for r in conn.execute(query).mappings()]

    def revoke(self, token_id: str, now: float) -> Token:
        """Revoke a token (again is harmless: the first revocation's time stays)."""
        with self.engine.begin() as conn:
            result = conn.execute(update(tokens_table).where(
                tokens_table.c.id == token_id, tokens_table.c.revoked_at.is_(None))
                .values(revoked_at=now))
            if result.rowcount == 0 and conn.execute(select(tokens_table.c.id).where(
                    tokens_table.c.id == token_id)).first() is None:
                raise NotFound(f"no token with id {token_id}")
        return self.token(token_id)

    def touch(self, token_id: str, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(tokens_table).where(tokens_table.c.id == token_id)
                         .values(last_used_at=now))

    @staticmethod
    def _require_user(conn: Connection, name: str) -> None:
        if conn.execute(select(users_table.c.name).where(users_table.c.name == name)
                        ).first() is None:
            raise NotFound(f"no user named {name}")

    # -- the audit trail ----------------------------------------------------
    def add_audit(self, entry: AuditEntry) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(audit_table).values(
                at=entry.at, user_name=entry.user[:64], token_id=entry.token_id,
                action=entry.action[:64], method=entry.method[:8],
                path=entry.path[:_PATH_CHARS], address=entry.address[:64],
                status=entry.status, outcome=entry.outcome[:_OUTCOME_CHARS],
                target=None if entry.target is None else entry.target[:_TARGET_CHARS]))

    def audit(self, user: str | None = None, since: float | None = None,
              limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries (of ``user``, since ``since``), oldest first."""
        query = select(audit_table).order_by(audit_table.c.at.desc(), audit_table.c.id.desc())
        if user is not None:
            query = query.where(audit_table.c.user_name == user)
        if since is not None:
            query = query.where(audit_table.c.at >= since)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query.limit(limit)).mappings())
        return [_audit(r) for r in reversed(rows)]


def _user(row: RowMapping) -> User:
    return User(name=row["name"], role=Role(row["role"]), created_at=row["created_at"])


def _token(row: RowMapping) -> Token:
    return Token(id=row["id"], user=row["user_name"], label=row["label"],
                 created_at=row["created_at"], expires_at=row["expires_at"],
                 revoked_at=row["revoked_at"], last_used_at=row["last_used_at"])


def _audit(row: RowMapping) -> AuditEntry:
    return AuditEntry(at=row["at"], user=row["user_name"], action=row["action"],
                      method=row["method"], path=row["path"], status=row["status"],
                      address=row["address"], target=row["target"], token_id=row["token_id"],
                      outcome=row["outcome"], id=row["id"])
