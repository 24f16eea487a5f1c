"""The API's users, tokens and audit routes (``/api/v1/users``, ``/tokens``, ``/audit``).

Users and the audit trail are the admin's. Tokens are everyone's own: any user
lists, creates and revokes their own; an admin also anyone's
(:func:`ferry.auth.accounts.require_own`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from ferry.api.guard import note
from ferry.api.schemas import (
    AuditOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserName,
    UserOut,
    to_schema,
)
from ferry.auth.accounts import Accounts, require_own
from ferry.auth.model import Principal
from ferry.auth.roles import ROUTES, Role

UserPath = Annotated[UserName, Path()]
TokenId = Annotated[str, Path(max_length=64)]


def add_account_routes(api: APIRouter, accounts: Accounts,
                       authorize: Callable[..., Principal]) -> None:
    caller_of = Depends(authorize)

    @api.get("/users", response_model=list[UserOut], tags=["users"])
    def list_users() -> list[UserOut]:
        return [to_schema(UserOut, u) for u in accounts.users()]

    @api.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED,
              tags=["users"])
    def add_user(body: UserCreate) -> UserOut:
        return to_schema(UserOut, accounts.add_user(body.name, body.role))

    @api.delete("/users/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["users"])
    def remove_user(name: UserPath) -> None:
        """Removes the user and their tokens; the last admin cannot be removed."""
        accounts.remove_user(name)

    @api.get("/tokens", response_model=list[TokenOut], tags=["tokens"])
    def list_tokens(user: Annotated[str | None, Query(max_length=64)] = None,
                    caller: Principal = caller_of) -> list[TokenOut]:
        """A user's tokens (default: the caller's own; an admin without ``user``: all)."""
        if user is None and caller.role is not Role.ADMIN:
            user = caller.user
        if user is not None:
            require_own(caller, user, ROUTES["GET", "/tokens"])
        return [to_schema(TokenOut, t) for t in accounts.tokens(user)]

    @api.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED,
              tags=["tokens"])
    def create_token(body: TokenCreate, request: Request,
                     caller: Principal = caller_of) -> TokenCreated:
        """A new token; the response is the only place its secret is ever shown."""
        owner = body.user or caller.user
        note(request, target=owner)
        require_own(caller, owner, ROUTES["POST", "/tokens"])
        record, secret = accounts.create_token(owner, body.label, body.expires_days)
        note(request, f"token {record.id}")
        return TokenCreated(token=secret, **to_schema(TokenOut, record).model_dump())

    @api.delete("/tokens/{token_id}", response_model=TokenOut, tags=["tokens"])
    def revoke_token(token_id: TokenId, caller: Principal = caller_of) -> TokenOut:
        """Revokes a token: every server refuses it from its next request on."""
        require_own(caller, accounts.token(token_id).user, ROUTES["DELETE", "/tokens/{token_id}"])
        return to_schema(TokenOut, accounts.revoke(token_id))

    @api.get("/audit", response_model=list[AuditOut], tags=["audit"])
    def audit(user: Annotated[str | None, Query(max_length=64)] = None,
              since: Annotated[float | None, Query(description="unix time")] = None,
              limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[AuditOut]:
        """The newest change requests (``limit`` of them), oldest first."""
        return [to_schema(AuditOut, e) for e in accounts.audit(user, since, limit)]
