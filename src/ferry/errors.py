"""ferry's one exception tree.

Every error ferry raises derives from :class:`FerryError`; libvirt's own
errors are translated into this tree in :mod:`ferry.virt.libvirt_calls`, part of
the libvirt seam (``virt/libvirt_*.py``, the only modules that import libvirt)::

    FerryError
     +-- InputError            bad input from a user: unknown name, bad URI, same host twice
     |    +-- NotFound         a named object (VM, host, datastore, job) does not exist
     |    +-- AmbiguousName    a name two VMs share: the caller must give a UUID
     +-- ConfigError           ferry or the lab is misconfigured (missing PKI, no image)
     +-- NotAuthenticated      no valid API token: none, unknown, wrong, revoked or expired
     +-- Forbidden             a valid token whose user's role does not allow the request
     +-- RefusedError          a pre-flight check refused an operation; carries the findings
     |    +-- VMBusy           the store holds an unfinished move of the VM; carries that job
     +-- HostError             talking to a hypervisor host failed
     |    +-- HostUnreachable  the host's libvirtd cannot be reached or the connection dropped
     |    +-- VirtError        libvirt reported an error for an operation (code + message)
     +-- MigrationError        a migration failed after it started
     |    +-- MigrationCancelled  the migration was cancelled by a user
     +-- LabError              building or tearing down the lab failed

Each class has an ``exit_code`` the CLI and an ``http_status`` the API use, so
the mapping from failure to exit status lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class FerryError(Exception):
    exit_code = 1
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(FerryError):
    exit_code = 2
    http_status = 400


class NotFound(InputError):
    http_status = 404


class AmbiguousName(InputError):
    """Two VMs (different UUIDs) answer to one name; ``matches`` are their (host, UUID)."""

    def __init__(self, message: str, matches: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.matches = list(matches)


class ConfigError(FerryError):
    exit_code = 3
    http_status = 500


class NotAuthenticated(FerryError):
    exit_code = 3  # as a missing token always exited: the client's setup is wrong
    http_status = 401


class Forbidden(FerryError):
    exit_code = 9
    http_status = 403


class RefusedError(FerryError):
    """A pre-flight check refused; ``findings`` are every failing requirement."""

    exit_code = 4
    http_status = 409

    def __init__(self, message: str, findings: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.findings = list(findings)


class VMBusy(RefusedError):
    """The store already holds an unfinished move of this VM (one move per VM).

    ``job`` is that move (a :class:`ferry.model.Job`); the engine turns it into
    the ``vm.moving`` finding.
    """

    def __init__(self, message: str, job: Any, findings: Sequence[Any] = ()) -> None:
        super().__init__(message, findings)
        self.job = job


class HostError(FerryError):
    exit_code = 5
    http_status = 502


class HostUnreachable(HostError):
    pass


class VirtError(HostError):
    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class MigrationError(FerryError):
    exit_code = 6
    http_status = 500


class MigrationCancelled(MigrationError):
    exit_code = 7


class LabError(FerryError):
    exit_code = 8
