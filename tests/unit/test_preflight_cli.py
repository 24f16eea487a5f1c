"""``ferry check`` and ``ferry host set`` end to end over the fake host boundary.

The real control plane, REST API, client and CLI; only the hypervisor is the
fake, so this proves ferry's own wiring: facts gathered from the right host,
the report's rows, exit codes, and bad input. The lab tests prove the
verdicts against real libvirt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.checks.facts import CpuVerdict
from ferry.cli.client import FerryClient
from ferry.cli.main import main
from ferry.engine.controlplane import ControlPlane
from ferry.lab.vms import LabVMFactory
from ferry.model import VM, Disk, Interface, VMState
from ferry.store.db import Store
from ferry.virt.fake import Backing, FakeHost, FakeWorld

TOKEN = "t0ken"
CPU_XML = "<cpu mode='custom' match='exact'><model>Westmere</model></cpu>"
WEB1 = VM(name="web1", uuid="u1", host="", state=VMState.RUNNING, memory_kib=2**20, vcpus=1,
          disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
          interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),),
          cpu_mode="custom", cpu_model="Westmere", cpu_xml=CPU_XML)


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld()
    shared = Backing()
    for i in (1, 2):
        host = FakeHost(world, f"host{i}", f"uuid-{i}")
        host.add_pool("shared", "/srv/shared", shared)
        host.add_pool("local", "/var/lib/local", Backing())
        host.add_network("Production")
    world.host("host1").add_vm(WEB1)
    return world


@pytest.fixture
def cli(world: FakeWorld, tmp_path: Path) -> Iterator[FerryClient]:
    plane = ControlPlane(Store(f"sqlite:///{tmp_path / 'ferry.db'}"), world.connect,
                         vm_factory=LabVMFactory())
    for i in (1, 2):
        plane.add_host(f"host{i}", f"qemu+tls://host{i}/system")
    with TestClient(create_app(plane, admin_accounts(tmp_path, TOKEN))) as http:
        yield FerryClient(http=http, token=TOKEN)
    plane.close()


def run(client: FerryClient, capsys: pytest.CaptureFixture[str],
        *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), client=client)
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(out: str) -> dict[str, str]:
    return {f["code"]: f["status"] for f in json.loads(out)["findings"]}


def test_allowed_move_exits_0_and_lists_what_was_checked(
    cli: FerryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(cli, capsys, "check", "web1", "--host", "host2")
    assert code == 0 and "allowed: 0 error(s)" in out
    assert "cpu.compatible" in out and "storage.shared" in out and "vm.swap-file" in out


def test_settings_an_admin_sets_are_judged(
    cli: FerryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(cli, capsys, "host", "set", "host2", "--migration", "off",
                       "--memory-limit", "512")
    assert code == 0 and "host2" in out
    code, out, _ = run(cli, capsys, "check", "web1", "--host", "host2")
    assert code == 4 and "refused: 2 error(s)" in out
    assert "host.migration-disabled" in out and "host.memory-insufficient" in out
    assert "remedy:" in out
    code, _, err = run(cli, capsys, "migrate", "web1", "--host", "host2")
    assert code == 4 and "host.migration-disabled" in err and "host.memory-insufficient" in err
    run(cli, capsys, "host", "set", "host2", "--migration", "on", "--memory-limit", "none")
    assert run(cli, capsys, "check", "web1", "--host", "host2")[0] == 0


def test_facts_come_from_the_hosts_that_own_them(
    world: FakeWorld, cli: FerryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    world.host("host2").cpu_verdict = CpuVerdict(False, ("aes",), "missing aes")
    world.host("host1").reachable_peers = set()  # the *source* cannot reach host2
    code, out, _ = run(cli, capsys, "check", "web1", "--host", "host2", "--json")
    assert code == 4
    found = rows(out)
    assert found["cpu.incompatible"] == "error" and found["host.unreachable"] == "error"
    report = json.loads(out)
    [cpu] = [f for f in report["findings"] if f["code"] == "cpu.incompatible"]
    assert "aes" in cpu["message"]


def test_block_disk_must_exist_on_destination(
    world: FakeWorld, cli: FerryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    lun = Disk("vdb", "disk", "block", "/dev/disk/by-id/wwn-0x5000", "raw")
    world.host("host1").add_vm(VM(**{**WEB1.__dict__, "name": "db1", "uuid": "u2",
                                     "disks": (*WEB1.disks, lun)}))
    run(cli, capsys, "refresh")
    code, out, _ = run(cli, capsys, "check", "db1", "--host", "host2", "--json")
    assert code == 4 and rows(out)["device.block-missing"] == "error"
    world.host("host2").block_devices.add(lun.source or "")
    code, out, _ = run(cli, capsys, "check", "db1", "--host", "host2", "--json")
    assert code == 0 and rows(out)["device.block-present"] == "pass"


@pytest.mark.parametrize(("argv", "words"), [
    (["check", "web1"], "say where"),
    (["check", "web1", "--host", "host1"], "already runs on host1"),
    (["check", "web1", "--host", "host9"], "no host named host9"),
    (["check", "web1", "--datastore", "nope"], "no datastore named nope"),
    (["check", "ghost", "--host", "host2"], "no VM named ghost"),
    (["host", "set", "host9", "--migration", "off"], "no host named host9"),
    (["host", "set", "host2", "--migration-interface", "eth0; rm -rf /"], "interface"),
    (["host", "set", "host2", "--migration-address", "../etc"], "migration address"),
])
def test_bad_input_exits_2_naming_it(cli: FerryClient, capsys: pytest.CaptureFixture[str],
                                     argv: list[str], words: str) -> None:
    code, _, err = run(cli, capsys, *argv)
    assert code == 2, err
    assert words in err


def test_remedies_fit_the_file_a_local_datastore_holds(
    world: FakeWorld, cli: FerryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    floppy = Disk("fda", "floppy", "file", "/var/lib/local/boot.img", "raw")
    world.host("host1").add_vm(VM(**{**WEB1.__dict__, "name": "db1", "uuid": "u2",
                                     "disks": (*WEB1.disks, floppy),
                                     "kernel": "/var/lib/local/vmlinuz"}))
    run(cli, capsys, "refresh")
    code, out, _ = run(cli, capsys, "check", "db1", "--host", "host2", "--json")
    assert code == 4
    remedy = {f["objects"]["file"]: f["remedy"] for f in json.loads(out)["findings"]
              if f["code"] == "storage.not-shared"}
    assert "floppy image" in remedy["/var/lib/local/boot.img"]
    assert "ISO" not in remedy["/var/lib/local/boot.img"]
    kernel = remedy["/var/lib/local/vmlinuz"]
    assert "copy the kernel file" in kernel and "Storage VMotion" not in kernel
