"""Finishing a job's clean-up from its recorded resources alone (``job_resources``).

What a move created is removed when it failed and becomes the VM's when it
succeeded; the VM's old files are freed when it succeeded and kept when it
failed. Any server can do this: the rows say what, where, and how far it got.
"""

from __future__ import annotations

from collections.abc import Callable

from ferry.errors import FerryError, NotFound
from ferry.job import JobResource, ResourceKind, ResourceState
from ferry.virt.base import HostConnection


def settle_to(resource: JobResource, succeeded: bool) -> ResourceState:
    """Where a resource must end when its job ``succeeded`` (or not). Pure."""
    if resource.kind is ResourceKind.STAGING:
        return ResourceState.REMOVED
    if resource.kind is ResourceKind.SOURCE_VOLUME:
        return ResourceState.REMOVED if succeeded else ResourceState.KEPT
    return ResourceState.ADOPTED if succeeded else ResourceState.REMOVED


def finish_resources(resources: tuple[JobResource, ...], succeeded: bool,
                     conn: Callable[[str], HostConnection],
                     record: Callable[[int, ResourceState], None]) -> list[str]:
    """Bring every unsettled resource to its end; what was done, and what could not be."""
    notes = []
    for res in resources:
        if res.state.settled:
            continue
        end = settle_to(res, succeeded)
        where = f"{res.kind.value} {res.path or res.name} on {res.host}"
        if end is ResourceState.REMOVED:
            try:
                _remove(conn(res.host), res)
            except FerryError as err:
                notes.append(f"could not remove {where}: {err.message}")
                continue
            notes.append(f"removed {where}")
        else:
            notes.append(f"{where}: {end.value}")
        record(res.id, end)
    return notes


def _remove(conn: HostConnection, res: JobResource) -> None:
    try:
        if res.kind is ResourceKind.DEFINITION:
            vm = conn.get_vm(res.name)
            if vm is not None:
                conn.undefine_vm(res.name)
        else:
            assert res.pool is not None, f"volume {res.name} recorded without its datastore"
            conn.delete_volume(res.pool, res.name)
    except NotFound:
        return  # never made, or already gone: nothing of the job's is left there
