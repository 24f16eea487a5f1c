"""A control plane over fake hosts, for unit tests of the engine's logic."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ferry.engine.controlplane import ControlPlane
from ferry.lab.vms import LabVMFactory
from ferry.model import Job
from ferry.store.db import Store
from ferry.virt.fake import FakeWorld


@contextmanager
def plane_over(world: FakeWorld, tmp_path: Path,
               hosts: Iterable[str] | None = None) -> Iterator[ControlPlane]:
    """A control plane on a fresh SQLite store with ``hosts`` (default: all) registered."""
    plane = ControlPlane(Store(f"sqlite:///{tmp_path / 'ferry.db'}"), world.connect,
                         vm_factory=LabVMFactory())
    try:
        for name in world.hosts if hosts is None else hosts:
            plane.add_host(name, f"qemu+tls://{name}/system")
        yield plane
    finally:
        plane.close()


def finished(plane: ControlPlane, job_id: str, timeout: float = 10.0) -> Job:
    """The job once it has ended; AssertionError if it has not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = plane.get_job(job_id)
        if job.state.finished:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish within {timeout:g} s")
