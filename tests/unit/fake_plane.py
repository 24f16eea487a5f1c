"""A control plane over fake hosts, for unit tests of the engine's logic."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ferry.engine.controlplane import ControlPlane
from ferry.engine.runner import LEASE_S
from ferry.job import Job
from ferry.lab.vms import LabVMFactory
from ferry.model import VM
from ferry.store.db import Store
from ferry.virt.fake import Backing, FakeHost, FakeWorld


@contextmanager
def plane_over(world: FakeWorld, tmp_path: Path,
               hosts: Iterable[str] | None = None, lease_s: float = LEASE_S,
               register: bool = True) -> Iterator[ControlPlane]:
    """A control plane on a SQLite store in ``tmp_path`` (made if new) with ``hosts``
    (default: all) registered; ``register=False``: the store already has them."""
    plane = ControlPlane(Store(f"sqlite:///{tmp_path / 'ferry.db'}"), world.connect,
                         vm_factory=LabVMFactory(), lease_s=lease_s)
    try:
        for name in (world.hosts if hosts is None else hosts) if register else ():
            plane.add_host(name, f"qemu+tls://{name}/system")
        yield plane
    finally:
        plane.close()


def shared_world(hosts: int, *vms: VM) -> FakeWorld:
    """Fake hosts host1..hostN seeing one ``shared`` datastore and network ``Production``,
    with ``vms`` on host1."""
    world = FakeWorld()
    shared = Backing()
    for i in range(1, hosts + 1):
        host = FakeHost(world, f"host{i}", f"uuid-{i}")
        host.add_pool("shared", "/srv/shared", shared)
        host.add_network("Production")
    for vm in vms:
        world.host("host1").add_vm(vm)
    return world


def volume_bytes(host: FakeHost, path: str) -> bytes:
    """A fake volume's bytes, its holes read as zeros."""
    return b"".join(c if isinstance(c, bytes) else bytes(c) for c in host.read_volume(path))


def finished(plane: ControlPlane, job_id: str, timeout: float = 10.0) -> Job:
    """The job once it has ended; AssertionError if it has not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = plane.get_job(job_id)
        if job.state.finished:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish within {timeout:g} s")
