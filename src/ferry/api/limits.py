"""How much a request may carry: its body is read into memory, so it is bounded.

The largest body the API takes (a migration naming its disks) is a few hundred
bytes; a megabyte leaves room for any honest client and none for a client
that would fill the server's memory.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1 << 20


class BodyLimit:
    """Refuses a body over ``max_bytes`` with 413, by its Content-Length or as it arrives.

    The refusal is raised where the route reads the body, so it leaves through
    the API's error handlers in the API's error envelope, and nothing ran.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        received = 0

        async def limited() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large()
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # chunked, or a Content-Length that lied
                raise self._too_large()
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body is larger than the API takes "
                                  f"({self.max_bytes} bytes)")
