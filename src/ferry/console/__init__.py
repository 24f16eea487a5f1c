"""The web console: static files ferry ships, served by ``ferry serve`` beside the API.

The console is a page of plain JavaScript modules that speaks only the REST API
(``/api/v1``) with the signed-in user's token, so it can do exactly what that
user's role lets the API do, and nothing the API does not offer. Nothing is
fetched from elsewhere at run time: every file is in ``static/``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
ASSETS_PREFIX = "/console"

# Only ferry's own files run in the page, and it may talk only to its own server:
# a VM's or host's name that carries markup stays text even if a bug let it through.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_console(app: FastAPI) -> None:
    """``/`` serves the console's page; ``/console/...`` its scripts and styles."""

    @app.get("/", include_in_schema=False)
    def console_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount(ASSETS_PREFIX, StaticFiles(directory=STATIC), name="console")
    app.add_middleware(SecurityHeaders)
