"""How ferry's calls to hosts grow with the fleet, counted by the fake hosts.

On real hosts each call is a round trip over the network, made one after
another: what grows with the square of the fleet is what stops a large one.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fake_plane import finished, plane_over

from ferry.engine.datastores import group_pools
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState
from ferry.reports import EvacuationReport
from ferry.virt.fake import Backing, FakeHost, FakeWorld

PROBES = ("create_volume", "list_volumes", "find_volume", "delete_volume", "refresh_pool")


def fleet(size: int, vms_on_first: int = 0) -> FakeWorld:
    """``size`` hosts, each with ``shared`` (one storage) and ``local`` (its own, at the
    same path on every host)."""
    world = FakeWorld()
    shared = Backing()
    for i in range(size):
        host = FakeHost(world, f"host{i:03d}", str(uuid.uuid4()))
        host.add_pool("shared", "/srv/shared", shared)
        host.add_pool("local", "/var/lib/local", Backing())
        host.add_network("Production")
    for n in range(vms_on_first):
        name = f"vm{n}"
        world.host("host000").add_vm(VM(
            name=name, uuid=str(uuid.uuid4()), host="", state=VMState.RUNNING,
            memory_kib=2**18 * (vms_on_first - n), vcpus=1,  # vm0 the biggest, placed first
            disks=(Disk("vda", "disk", "file", f"/srv/shared/{name}.qcow2", "qcow2"),),
            interfaces=(Interface(f"52:54:00:00:00:{n:02x}", "network", "Production"),)))
    return world


def probes(world: FakeWorld) -> int:
    return sum(h.calls[m] for h in world.hosts.values() for m in PROBES)


def grouped_with_probes(size: int) -> tuple[dict[tuple[str, str], str | None], int]:
    world = fleet(size)
    pools = [p for h in world.hosts.values() for p in h.list_pools()]
    world.reset_calls()
    grouped = group_pools(pools, world.hosts)
    return {(p.host, p.name): p.datastore for p in grouped}, probes(world)


def test_datastore_probes_grow_with_the_pools_not_with_their_pairs() -> None:
    small, small_probes = grouped_with_probes(10)
    large, large_probes = grouped_with_probes(40)
    # Still proved: one shared datastore, and each local folder its own.
    assert {large[(f"host{i:03d}", "shared")] for i in range(40)} == {"shared"}
    assert len({large[(f"host{i:03d}", "local")] for i in range(40)}) == 40
    assert small[("host003", "local")] == "local@host003"
    # Four times the hosts, four times the probes; every pool against every other
    # would have been 16 times (3,000 look-ups at 40 hosts).
    assert large_probes <= 4 * small_probes + 4
    assert large_probes <= 5 * 80  # a few probe calls per pool


def test_a_full_refresh_calls_hosts_in_proportion_to_the_fleet(tmp_path: Path) -> None:
    counts = []
    for size in (5, 20):
        world = fleet(size)
        (tmp_path / str(size)).mkdir()
        with plane_over(world, tmp_path / str(size)) as plane:
            world.reset_calls()
            plane.refresh()
            counts.append(world.calls())
    assert counts[1] <= 4 * counts[0] + 4


def test_refreshing_one_host_calls_that_host_and_one_probe_per_known_datastore(
        tmp_path: Path) -> None:
    world = fleet(6)
    with plane_over(world, tmp_path) as plane:
        known_groups = len(plane.list_datastores())  # shared, and a local one per host
        world.reset_calls()
        plane.refresh("host002")
        others = {name: dict(h.calls) for name, h in world.hosts.items()
                  if name != "host002" and h.calls}
        writes = sum(c.get("create_volume", 0) for c in others.values())
        # The others only receive markers, at most one per datastore group they hold
        # (host002's own local group is not among them), and have them removed.
        assert writes <= known_groups - 1
        assert {m for c in others.values() for m in c} <= {"create_volume", "delete_volume"}
        assert sum(c.get("delete_volume", 0) for c in others.values()) == writes
        # host002 is read once and each of its pools listed once.
        assert world.host("host002").calls["list_volumes"] <= 2
        views = {d.name: d.hosts for d in plane.list_datastores()}
        assert len(views["shared"]) == 6
        assert views["local@host002"] == ("host002",)


def test_an_evacuation_judges_hosts_in_order_until_one_passes(tmp_path: Path) -> None:
    world = fleet(20, vms_on_first=3)
    with plane_over(world, tmp_path) as plane:
        world.reset_calls()
        job = finished(plane, plane.enter_maintenance("host000").id)
        assert job.state is JobState.SUCCEEDED
        assert isinstance(job.report, EvacuationReport) and len(job.report.moved) == 3
        # Each VM's path to a destination is probed from its host only for the hosts
        # judged: the first that passes, not all 19.
        assert world.host("host000").calls["probe_peer"] <= 3


def test_an_evacuation_that_meets_an_unexpected_error_reports_what_it_moved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = fleet(4, vms_on_first=3)
    source = world.host("host000")
    with plane_over(world, tmp_path) as plane:
        real_get_vm = FakeHost.get_vm

        def get_vm(host: FakeHost, name: str) -> VM | None:
            if host is source and name == "vm1":
                raise RuntimeError("connection pool exhausted")  # not a FerryError
            return real_get_vm(host, name)

        monkeypatch.setattr(FakeHost, "get_vm", get_vm)
        job = finished(plane, plane.enter_maintenance("host000").id)
        assert job.state is JobState.FAILED
        assert isinstance(job.report, EvacuationReport)
        assert set(job.report.moved) == {"vm0"}  # placed before the error, and moved
        assert "connection pool exhausted" in job.report.not_moved["vm1"]
        assert "vm2" in job.report.not_moved
        assert "connection pool exhausted" in (job.error or "")
        assert plane.list_hosts()[0].maintenance  # as after any evacuation that left VMs
        assert all(j.state.finished for j in plane.list_jobs())  # nothing left running
        assert "vm0" in {vm.name for vm in plane.list_vms() if vm.host != "host000"}
