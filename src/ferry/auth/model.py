"""Plain typed data of users, tokens and the audit trail (no IO, like :mod:`ferry.model`)."""

from __future__ import annotations

from dataclasses import dataclass

from ferry.auth.roles import Role

ANONYMOUS = "anonymous"  # the audit trail's user when a request proved no identity


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created_at: float


@dataclass(frozen=True)
class Token:
    """A token as listed: never its secret (the store does not have it), nor its hash."""

    id: str
    user: str
    label: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None


@dataclass(frozen=True)
class Principal:
    """Who a request is: the user its token belongs to, their role, and which token."""

    user: str
    role: Role
    token_id: str


@dataclass(frozen=True)
class AuditEntry:
    """One change request, whatever became of it."""

    at: float
    user: str  # the user, or ANONYMOUS when the request proved none
    action: str  # the role table's name: "migration.start"
    method: str
    path: str
    status: int
    address: str  # the client's address, as the server saw it
    target: str | None = None  # the VM, host, cluster, user, job or token it named
    token_id: str | None = None  # the token it presented, when that claims an id
    outcome: str = ""  # a started job's id, a refusal's message
    id: int = 0
