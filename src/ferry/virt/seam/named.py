"""What every capability of a host connection shares: the host's name, and closing."""

from __future__ import annotations

from typing import Protocol


class Named(Protocol):
    name: str  # the host's name in ferry, for messages and records

    def close(self) -> None: ...
