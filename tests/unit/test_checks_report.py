"""The pre-flight report: the right requirements per kind of move, every failure at once."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
from preflight_fixtures import (
    codes,
    facts,
    host,
    inventory,
    link,
    net,
    only,
    pool,
    settings,
    storage_move,
    tls_ready,
    vm,
)

from ferry.checks.facts import CpuVerdict, MoveKind, MoveRequest, Reachability
from ferry.checks.finding import Status
from ferry.checks.report import REQUIREMENTS, preflight, requirements_for
from ferry.model import CpuAffinity, Disk, VMState

CHECKS = Path(__file__).parents[2] / "src" / "ferry" / "checks"
DOC = Path(__file__).parents[2] / "docs" / "preflight.md"

REQUESTS = {
    MoveKind.HOST: MoveRequest(vm="web1", dest_host="host2"),
    MoveKind.STORAGE: storage_move(),
    MoveKind.BOTH: MoveRequest(vm="web1", dest_host="host2", dest_datastore="nfs"),
    MoveKind.COLD: MoveRequest(vm="web1", dest_host="host2", cold=True),
}


def test_registry_codes_are_unique() -> None:
    names = [r.code for r in REQUIREMENTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("kind", list(MoveKind))
def test_every_requirement_gives_a_row_for_every_kind(kind: MoveKind) -> None:
    the_vm = vm(state=VMState.SHUTOFF) if kind is MoveKind.COLD else vm()
    rows = preflight(facts(vm=the_vm, request=REQUESTS[kind]))
    assert REQUESTS[kind].kind is kind
    applies = {r.code for r in requirements_for(kind)}
    for req in REQUIREMENTS:
        if req.code not in applies:
            row = only(rows, req.code)
            assert row.status is Status.NOT_APPLICABLE and "not checked for" in row.message
    assert all(f.message and f.objects for f in rows)
    assert all(f.remedy for f in rows if f.status in (Status.ERROR, Status.WARNING))


def test_healthy_host_move_has_no_error_and_says_what_it_checked() -> None:
    rows = preflight(facts())
    assert codes(rows) == [] and codes(rows, Status.WARNING) == []
    passed = codes(rows, Status.PASS)
    for code in ("vm.running", "host.reachable", "cpu.vendor", "storage.shared",
                 "network.present", "network.portgroup", "host.memory", "link.speed"):
        assert code in passed
    assert only(rows, "vm.swap-file").status is Status.NOT_APPLICABLE
    assert "disks of VM web1 stay" in only(rows, "storage.space").message


def test_every_failure_at_once() -> None:
    bad = vm(state=VMState.PAUSED, affinity=CpuAffinity(vcpu_cpuset="0-3"),
             disks=(*vm().disks, Disk("hdd", "cdrom", "block", "/dev/sr0")))
    inv = inventory(hosts={"host1": host("host1"), "host2": host("host2", vendor="AMD", cpus=1)},
                    networks=(net("host1", "Production", forward=None),
                              net("host2", "Production", portgroups=())))
    f = facts(vm=bad, inventory=inv, reachability=Reachability(False),
              cpu=CpuVerdict(False, ("avx2",)), block_jobs=("vda",),
              links={"host1": link(up=False), "host2": link(speed_mbps=100, mtu=1500)},
              memory_committed_mib={"host2": 16000},
              migrations_running={"host2": 2},
              migration_tls={"host1": tls_ready(), "host2": tls_ready("server-key.pem")},
              settings={"host1": settings("host1", migration_enabled=False),
                        "host2": settings("host2", maintenance=True,
                                          migration_network_isolated=False)})
    rows = preflight(f)
    assert codes(rows) == [
        "vm.not-running", "vm.block-job-running", "host.migration-disabled", "host.unreachable",
        "link.down", "migration.no-tls", "host.maintenance", "host.memory-insufficient",
        "host.vcpus-insufficient",
        "cpu.vendor-mismatch", "cpu.incompatible", "network.portgroup-missing",
        "network.internal-only", "vm.cpu-affinity", "device.host-media"]
    assert codes(rows, Status.WARNING) == ["link.slow", "link.mtu-small",
                                           "host.migrations-queued"]
    assert "--cold" in only(rows, "vm.not-running").remedy


def test_host_and_storage_together_copies_disks_but_not_isos() -> None:
    local = vm(disks=(Disk("vda", "disk", "file", "/var/lib/local/web1.qcow2", "qcow2"),
                      Disk("hdc", "cdrom", "file", "/var/lib/local/debian.iso", "raw",
                           readonly=True)))
    rows = preflight(facts(vm=local, request=REQUESTS[MoveKind.BOTH]))
    assert codes(rows) == ["storage.not-shared"]
    row = only(rows, "storage.not-shared")
    assert row.objects["file"] == "/var/lib/local/debian.iso"
    assert "change-media web1 hdc --eject" in row.remedy
    assert only(rows, "storage.target-visible").objects["host"] == "host2"
    assert only(rows, "storage.single-instance").status is Status.PASS


def test_storage_move_skips_host_requirements() -> None:
    rows = preflight(facts(request=storage_move(), links={}, reachability=None,
                           settings={"host1": settings("host1")}))
    assert codes(rows) == [] and codes(rows, Status.WARNING) == []
    row = only(rows, "cpu.vendor")
    assert row.status is Status.NOT_APPLICABLE and "stays on host host1" in row.message


def test_cold_move_needs_powered_off_vm_networks_and_space() -> None:
    request = MoveRequest(vm="web1", dest_host="host2", dest_datastore="local", cold=True)
    tight = replace(inventory(), pools=(*inventory().pools[:3],
                                        pool("host2", "local", "/var/lib/local", "local@host2",
                                             available=1)),
                    networks=(net("host1", "Production"),))
    rows = preflight(facts(request=request, inventory=tight))
    assert codes(rows) == ["vm.not-powered-off", "network.missing", "storage.space-insufficient"]
    assert "drop --cold" in only(rows, "vm.not-powered-off").remedy
    assert only(rows, "cpu.vendor").status is Status.NOT_APPLICABLE
    assert "powered off" in only(rows, "cpu.vendor").message


def test_every_code_is_documented() -> None:
    source = "\n".join(p.read_text() for p in CHECKS.glob("*.py"))
    found = set(re.findall(r'(?:Finding|Requirement|_not_meaningful)\(\s*"([a-z]+\.[a-z/-]+)"',
                           source))
    found |= set(re.findall(r'_(?:stays|disks_stay)\(facts, "([a-z]+\.[a-z-]+)"', source))
    assert len(found) > 60
    doc = DOC.read_text()
    assert sorted(c for c in found if f"`{c}`" not in doc) == []
