"""The console's live feed: who is signed in, and the fleet's state pushed as it changes.

``GET /api/v1/events`` is a Server-Sent Events stream. Every second the server
reads the inventory cache and the job records (the database is the truth, so a
change made through another ferry server shows too) and sends each part only
when it differs from what this client last got: ``inventory`` (hosts, clusters,
VMs, datastores, networks) and ``jobs`` (the recent ones, unfinished first).
The stream asks again every half minute who its token is, so a revoked or
expired token ends it like it ends any other request.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from ferry.api.guard import bearer
from ferry.api.schemas import (
    ClusterOut,
    DatastoreOut,
    HostOut,
    JobOut,
    NetworkOut,
    SessionOut,
    VMOut,
    to_schema,
)
from ferry.auth.accounts import Accounts
from ferry.auth.model import Principal
from ferry.errors import FerryError
from ferry.service import FerryService

PUSH_INTERVAL_S = 1.0
KEEPALIVE_S = 15.0  # a comment line, so proxies and the browser keep the stream open
REAUTH_S = 30.0
RECENT_JOBS = 40  # finished ones; every unfinished job is sent too


def inventory_state(service: FerryService) -> dict[str, Any]:
    """The inventory as the REST API shows it, in one object."""
    state: dict[str, Any] = jsonable_encoder({
        "hosts": [to_schema(HostOut, h) for h in service.list_hosts()],
        "clusters": [to_schema(ClusterOut, c) for c in service.list_clusters()],
        "vms": [to_schema(VMOut, v) for v in service.list_vms()],
        "datastores": [to_schema(DatastoreOut, d) for d in service.list_datastores()],
        "networks": [to_schema(NetworkOut, n) for n in service.list_networks()],
    })
    return state


def jobs_state(service: FerryService) -> list[Any]:
    """Every unfinished job, then the recent others (the Recent Tasks pane's order)."""
    jobs = service.current_jobs(RECENT_JOBS)
    return list(jsonable_encoder([to_schema(JobOut, j) for j in jobs]))


def sse_message(event: str, data: object) -> bytes:
    """One Server-Sent Events message; JSON has no raw newline, so one data line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def add_live_routes(api: APIRouter, service: FerryService, accounts: Accounts,
                    authorize: Callable[..., Principal]) -> None:
    caller_of = Depends(authorize)

    @api.get("/session", response_model=SessionOut, tags=["console"])
    def session(caller: Principal = caller_of) -> SessionOut:
        """Who the token is: the console's sign-in asks this."""
        return SessionOut(user=caller.user, role=caller.role)

    @api.get("/events", tags=["console"],
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "Server-Sent Events: inventory and jobs"}})
    async def events(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> StreamingResponse:
        token = credentials.credentials if credentials else None
        return StreamingResponse(_stream(token), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def _stream(token: str | None) -> AsyncIterator[bytes]:
        last: dict[str, object] = {}
        quiet_since = authed_at = time.monotonic()
        # Starlette ends this generator when the client goes away.
        while True:
            now = time.monotonic()
            if now - authed_at >= REAUTH_S:
                try:
                    await anyio.to_thread.run_sync(accounts.authenticate, token)
                except FerryError as err:
                    yield sse_message("signed-out", {"message": err.message})
                    return
                authed_at = now
            parts = {
                "inventory": await anyio.to_thread.run_sync(inventory_state, service),
                "jobs": await anyio.to_thread.run_sync(jobs_state, service),
            }
            sent = False
            for name, value in parts.items():
                if last.get(name) != value:
                    last[name] = value
                    sent = True
                    yield sse_message(name, value)
            if sent:
                quiet_since = now
            elif now - quiet_since >= KEEPALIVE_S:
                quiet_since = now
                yield b": keep-alive\n\n"
            await anyio.sleep(PUSH_INTERVAL_S)
