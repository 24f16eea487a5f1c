"""Who is asking and whether they may: the API's token check, role check and audit trail.

:func:`make_authorize` is a FastAPI dependency of every ``/api/v1`` route, so it
runs before the endpoint, before the request's body is acted on: a request
outside its user's role is refused (403) having changed nothing.
:class:`AuditTrail` is an ASGI middleware: it writes one row per change request
(POST, PUT, PATCH, DELETE), refused or not, before the response leaves, so a
client that reads the trail right after its request finds it there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry.auth import tokens
from ferry.auth.accounts import Accounts
from ferry.auth.model import ANONYMOUS, AuditEntry, Principal
from ferry.auth.roles import CHANGING_METHODS, Rule, refusal, rule_for
from ferry.errors import Forbidden

log = logging.getLogger(__name__)

# auto_error=False: a missing header must produce ferry's envelope, not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, description="A token of `ferry token create` "
                    "(or, on the server's machine, the one in FERRY_HOME/token)")

_BODY_LIMIT = 64 * 1024  # of a request's body kept to name its object; requests are small
_PRINCIPAL = "principal"
_RULE = "audit_rule"
_PARAMS = "audit_path_params"
_OUTCOME = "audit_outcome"
_TARGET = "audit_target"


def route_rule(prefix: str, method: str, route: object) -> Rule | None:
    path = getattr(route, "path", None)
    return rule_for(method, path.removeprefix(prefix)) if isinstance(path, str) else None


def make_authorize(accounts: Accounts, prefix: str) -> Callable[..., Principal]:
    def authorize(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        rule = route_rule(prefix, request.method, request.scope.get("route"))
        # First: a request refused for its token is still in the trail under its action.
        setattr(request.state, _RULE, rule)
        setattr(request.state, _PARAMS, dict(request.path_params))
        principal = accounts.authenticate(credentials.credentials if credentials else None)
        setattr(request.state, _PRINCIPAL, principal)
        if rule is None:  # a route nobody put in the table is closed to everyone
            raise Forbidden(f"{request.method} {request.url.path} is in no role's rules")
        if not principal.role.allows(rule.role):
            raise Forbidden(refusal(principal.user, principal.role, rule))
        return principal

    return authorize


def note(request: Request, outcome: str | None = None, target: str | None = None) -> None:
    """What the audit trail says a request came to (a job's id, an error), and its object
    when the route's rule cannot tell it."""
    if outcome is not None:
        setattr(request.state, _OUTCOME, outcome)
    if target is not None:
        setattr(request.state, _TARGET, target)


class AuditTrail:
    """The ASGI middleware that records every change request made of ``prefix``."""

    def __init__(self, app: ASGIApp, accounts: Accounts, prefix: str) -> None:
        self.app = app
        self._accounts = accounts
        self._prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in CHANGING_METHODS
                or not scope["path"].startswith(self._prefix + "/")):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        body = bytearray()
        recorded = False

        async def receive_kept() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < _BODY_LIMIT:
                body.extend(message.get("body", b"")[:_BODY_LIMIT - len(body)])
            return message

        async def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            entry = self._entry(scope, state, bytes(body), status)
            try:
                await anyio.to_thread.run_sync(self._accounts.record, entry)
            except Exception:  # the request's own result stands; the gap is logged
                log.exception("could not record %s %s in the audit trail", entry.action,
                              entry.target)

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                await record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive_kept, send_recorded)
        except Exception as exc:
            state.setdefault(_OUTCOME, f"internal error: {type(exc).__name__}")
            await record(500)
            raise

    def _entry(self, scope: Scope, state: dict[str, Any], body: bytes,
               status: int) -> AuditEntry:
        method: str = scope["method"]
        path: str = scope["path"]
        # Set by authorize; absent when no route matched (404, 405): action "unknown".
        rule = state.get(_RULE)
        params: dict[str, Any] = state.get(_PARAMS, {})
        principal = state.get(_PRINCIPAL)
        token_id: str | None
        if isinstance(principal, Principal):
            user, token_id = principal.user, principal.token_id
        else:
            user, token_id = ANONYMOUS, _claimed_token_id(scope)
        target = state.get(_TARGET)
        if target is None and isinstance(rule, Rule):
            target = _target(rule, params, body, scope)
        client = scope.get("client")
        return AuditEntry(
            at=self._accounts.now(), user=user,
            action=rule.action if isinstance(rule, Rule) else "unknown",
            method=method, path=path, status=status,
            address=str(client[0]) if client else "unknown", target=target,
            token_id=token_id, outcome=str(state.get(_OUTCOME, "")))


def _claimed_token_id(scope: Scope) -> str | None:
    """The id the request's token claims (never the token): it names who tried."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return tokens.token_id_of(token.strip())
    return None


def _target(rule: Rule, params: dict[str, Any], body: bytes, scope: Scope) -> str | None:
    """The object a request named, where its route's rule says it is. Only that one field
    is read from a body: nothing else of it (a secret, say) reaches the trail."""
    if rule.target is None:
        return None
    where, _, name = rule.target.partition(":")
    value: object = None
    if where == "path":
        value = params.get(name)
    elif where == "query":
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
        value = values[0] if values else None
    elif where == "body":
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
        value = parsed.get(name) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None
