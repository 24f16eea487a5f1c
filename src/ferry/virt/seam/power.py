"""Power: a VM's definition on a host, and its power state."""

from __future__ import annotations

from typing import Protocol

from ferry.virt.seam.named import Named


class Power(Named, Protocol):
    def define_vm(self, domain_xml: str) -> None: ...

    def undefine_vm(self, name: str) -> None: ...

    def saved_definition(self, name: str, disks: dict[str, tuple[str, str]]) -> str:
        """VM ``name``'s persistent definition, disks ``{target: (path, format)}`` repointed."""
        ...

    def start_vm(self, name: str) -> None: ...

    def shutdown_vm(self, name: str) -> None: ...

    def destroy_vm(self, name: str) -> None: ...

    def suspend_vm(self, name: str) -> None: ...

    def resume_vm(self, name: str) -> None: ...
