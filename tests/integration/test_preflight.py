"""Pre-flight verdicts against reality: each refusal built for real in the lab.

For every situation: ferry refuses with the code and names the object; where
libvirt itself would try, the test bypasses ferry (plain virsh) and shows the
attempt failing or doing what the check predicts; made right, ferry passes
and the migration succeeds.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import LabEnv, define, wait_until

pytestmark = pytest.mark.lab

PEER = "qemu+tls://198.18.0.{n}/system"


def check(lab: LabEnv, vm: str, *where: str) -> tuple[int, dict[str, list[dict[str, object]]]]:
    result = lab.ferry("check", vm, *where, "--json")
    assert result.code in (0, 4), result.err
    report = json.loads(result.out)
    by_code: dict[str, list[dict[str, object]]] = {}
    for finding in report["findings"]:
        by_code.setdefault(str(finding["code"]), []).append(finding)
    return result.code, by_code


def errors(by_code: dict[str, list[dict[str, object]]]) -> set[str]:
    return {code for code, rows in by_code.items() if any(r["status"] == "error" for r in rows)}


def bypass_migrate(lab: LabEnv, vm: str, src: str, dest_index: int,
                   *flags: str) -> subprocess.CompletedProcess[str]:
    """libvirt's own live migration, without ferry.

    ``--unsafe`` because these VMs' disks are on the shared datastore, which
    libvirt cannot recognise as shared (ferry proves it with a probe).
    """
    return lab.virsh(src, "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
                     "--unsafe", *flags, vm, PEER.format(n=10 + dest_index), check=False)


@pytest.fixture
def custom_vm(lab: LabEnv, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """A lab guest defined straight through libvirt with one piece changed."""
    made: list[str] = []

    def make(name: str, host: str, change: Callable[[ET.Element], None],
             start: bool = True) -> str:
        base = lab.ferry("vm", "create", name, "--host", host, "--datastore", "shared",
                         "--memory", "128", "--disk", "16", "--workload", "heartbeat",
                         "--no-start")
        assert base.code == 0, base.err
        made.append(name)
        root = ET.fromstring(lab.virsh(host, "dumpxml", "--inactive", name).stdout)
        change(root)
        define(lab, host, ET.tostring(root, encoding="unicode"), tmp_path, start)
        return name

    yield make
    for name in made:
        lab.ferry("vm", "delete", name)


def test_cpu_affinity_refused_then_allowed_once_unpinned(
    lab: LabEnv, custom_vm: Callable[..., str], tmp_path: Path
) -> None:
    def pin(root: ET.Element) -> None:
        cputune = ET.SubElement(root, "cputune")
        ET.SubElement(cputune, "vcpupin", vcpu="0", cpuset="1")

    vm = custom_vm("pin1", "host1", pin)
    code, rows = check(lab, vm, "--host", "host2")
    assert code == 4 and errors(rows) == {"vm.cpu-affinity"}
    assert rows["vm.cpu-affinity"][0]["objects"]["vm"] == vm
    assert "vcpupin" in str(rows["vm.cpu-affinity"][0]["message"])
    # Bypassing ferry, libvirt carries the pinning to a host nobody chose it for.
    assert bypass_migrate(lab, vm, "host1", 2).returncode == 0
    assert "1" in lab.virsh("host2", "vcpupin", vm, "--vcpu", "0").stdout.split()[-1]
    assert bypass_migrate(lab, vm, "host2", 1).returncode == 0
    assert lab.ferry("refresh").code == 0
    # Made right: the pinning removed from the definition (a pin to every CPU is
    # still a pin), the VM restarted on it; ferry allows and the move works.
    root = ET.fromstring(lab.virsh("host1", "dumpxml", "--inactive", vm).stdout)
    cputune = root.find("cputune")
    assert cputune is not None
    root.remove(cputune)
    lab.virsh("host1", "destroy", vm)
    define(lab, "host1", ET.tostring(root, encoding="unicode"), tmp_path)
    code, rows = check(lab, vm, "--host", "host2")
    assert code == 0, rows
    assert lab.ferry("migrate", vm, "--host", "host2").code == 0
    assert lab.domains("host2").get(vm) == "running"


def test_cdrom_on_host_device_refused(lab: LabEnv, custom_vm: Callable[..., str],
                                      tmp_path: Path) -> None:
    image = tmp_path / "media.iso"
    image.write_bytes(b"\0" * 2**20)
    loop = subprocess.run(["losetup", "--find", "--show", "--read-only", str(image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        def cdrom(root: ET.Element) -> None:
            devices = root.find("devices")
            assert devices is not None
            disk = ET.SubElement(devices, "disk", type="block", device="cdrom")
            ET.SubElement(disk, "driver", name="qemu", type="raw")
            ET.SubElement(disk, "source", dev=loop)
            ET.SubElement(disk, "target", dev="hdc", bus="ide")
            ET.SubElement(disk, "readonly")

        vm = custom_vm("cd1", "host1", cdrom)
        code, rows = check(lab, vm, "--host", "host2")
        assert code == 4 and errors(rows) == {"device.host-media"}
        finding = rows["device.host-media"][0]
        assert loop in str(finding["message"]) and "hdc" in str(finding["message"])
        # Made right: the drive ejected, nothing else stands in the way.
        lab.virsh("host1", "change-media", vm, "hdc", "--eject", "--live", "--config")
        assert lab.ferry("refresh").code == 0
        code, rows = check(lab, vm, "--host", "host2")
        assert code == 0, errors(rows)
        assert lab.ferry("migrate", vm, "--host", "host2").code == 0
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_transient_disk_refused_and_libvirt_agrees(
    lab: LabEnv, custom_vm: Callable[..., str]
) -> None:
    def transient(root: ET.Element) -> None:
        disk = root.find("devices/disk")
        assert disk is not None
        ET.SubElement(disk, "transient")

    vm = custom_vm("tr1", "host1", transient)
    code, rows = check(lab, vm, "--datastore", "local")
    assert code == 4 and "storage.disk-transient" in errors(rows)
    assert rows["storage.disk-transient"][0]["objects"]["vm"] == vm
    code, rows = check(lab, vm, "--host", "host2")
    # libvirt itself refuses to move a VM with a transient disk; ferry must not allow it.
    attempt = bypass_migrate(lab, vm, "host1", 2)
    assert attempt.returncode != 0 and "transient" in attempt.stderr.lower()
    assert code == 4, "ferry allowed what libvirt refuses"


def test_snapshot_refused_for_storage_move(lab: LabEnv, custom_vm: Callable[..., str]) -> None:
    vm = custom_vm("snap1", "host1", lambda root: None, start=False)
    lab.virsh("host1", "snapshot-create-as", vm, "s1")
    assert lab.ferry("refresh").code == 0
    code, rows = check(lab, vm, "--datastore", "local", "--cold")
    assert code == 4 and "storage.snapshots" in errors(rows)
    assert rows["storage.snapshots"][0]["objects"]["vm"] == vm
    lab.virsh("host1", "snapshot-delete", vm, "s1")
    assert lab.ferry("refresh").code == 0
    code, rows = check(lab, vm, "--datastore", "local", "--cold")
    assert "storage.snapshots" not in errors(rows)


def test_host_settings_refuse_then_allow(lab: LabEnv, make_vm: Callable[..., None]) -> None:
    make_vm("set1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat")
    try:
        assert lab.ferry("host", "set", "host2", "--migration", "off").code == 0
        assert lab.ferry("host", "set", "host3", "--memory-limit", "128").code == 0
        code, rows = check(lab, "set1", "--host", "host2")
        assert code == 4 and errors(rows) == {"host.migration-disabled"}
        assert rows["host.migration-disabled"][0]["objects"]["host"] == "host2"
        code, rows = check(lab, "set1", "--host", "host3")
        assert code == 4 and errors(rows) == {"host.memory-insufficient"}
        assert "128" in str(rows["host.memory-insufficient"][0]["message"])
        refused = lab.ferry("migrate", "set1", "--host", "host3")
        assert refused.code == 4 and "host.memory-insufficient" in refused.err
        assert lab.domains("host1").get("set1") == "running"
        assert "set1" not in lab.domains("host3")
    finally:
        lab.ferry("host", "set", "host2", "--migration", "on")
        lab.ferry("host", "set", "host3", "--memory-limit", "none")
    assert lab.ferry("migrate", "set1", "--host", "host3").code == 0
    assert lab.domains("host3").get("set1") == "running"


def test_destination_unreachable_from_source(lab: LabEnv, make_vm: Callable[..., None]) -> None:
    from ferry.lab.lab import cut_link, restore_link, wait_healthy

    make_vm("reach1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "heartbeat")
    cut_link("host2")
    try:
        code, rows = check(lab, "reach1", "--host", "host2")
        assert code == 4 and "host.unreachable" in errors(rows)
        finding = rows["host.unreachable"][0]
        assert finding["objects"]["dest_host"] == "host2"
        assert finding["objects"]["source_host"] == "host1"
        # libvirt, bypassing ferry, cannot get there either.
        attempt = bypass_migrate(lab, "reach1", "host1", 2)
        assert attempt.returncode != 0
        assert lab.domains("host1").get("reach1") == "running"
    finally:
        restore_link("host2")
        wait_healthy()
    wait_until(lambda: check(lab, "reach1", "--host", "host2")[0] == 0, 60,
               "host2 reachable again")
    assert lab.ferry("migrate", "reach1", "--host", "host2").code == 0


def test_check_reports_every_requirement(lab: LabEnv, make_vm: Callable[..., None]) -> None:
    make_vm("rows1", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "16", "--workload", "none", "--network", "Production", "--no-start")
    code, rows = check(lab, "rows1", "--host", "host2")
    assert code == 4
    # Both failures at once, not the first only.
    assert {"vm.not-running", "storage.not-shared"} <= errors(rows)
    for always in ("vm.swap-file", "license.vmotion", "migration.protected"):
        assert always in rows, always
    # The lab's hosts have QEMU's migration certificates: the streams will be encrypted.
    assert [r["status"] for r in rows["migration.protected"]] == ["pass"]
    assert lab.ferry("check", "rows1", "--host", "host9").code == 2
    assert lab.ferry("check", "ghost", "--host", "host2").code == 2


def test_block_disk_needs_the_same_device_on_destination(
    lab: LabEnv, custom_vm: Callable[..., str], tmp_path: Path
) -> None:
    from ferry.lab import layout
    from ferry.lab.lab import local_datastore_dir

    # A "LUN": a loop device, presented to host1 under a path only host1 has.
    image = tmp_path / "lun.img"
    image.write_bytes(b"\0" * 16 * 2**20)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    device = f"{layout.LOCAL_DATASTORE_MOUNTPOINT}/rdm0"
    links = [local_datastore_dir(h) / "rdm0" for h in ("host1", "host2")]
    links[0].symlink_to(loop)
    try:
        def block_disk(root: ET.Element) -> None:
            devices = root.find("devices")
            assert devices is not None
            disk = ET.SubElement(devices, "disk", type="block", device="disk")
            ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none", io="native")
            ET.SubElement(disk, "source", dev=device)
            ET.SubElement(disk, "target", dev="vdb", bus="virtio")

        vm = custom_vm("rdm1", "host1", block_disk)
        code, rows = check(lab, vm, "--host", "host2")
        assert code == 4 and errors(rows) == {"device.block-missing"}, errors(rows)
        finding = rows["device.block-missing"][0]
        assert finding["objects"]["device"] == device and finding["objects"]["host"] == "host2"
        # libvirt, bypassing ferry: the destination cannot open the device.
        attempt = bypass_migrate(lab, vm, "host1", 2)
        assert attempt.returncode != 0 and "rdm0" in attempt.stderr
        assert lab.domains("host1").get(vm) == "running" and vm not in lab.domains("host2")
        # Made right: the same LUN presented to host2 under the same path.
        links[1].symlink_to(loop)
        code, rows = check(lab, vm, "--host", "host2")
        assert code == 0, errors(rows)
        assert rows["device.block-present"][0]["objects"]["device"] == device
        assert lab.ferry("migrate", vm, "--host", "host2").code == 0
        assert lab.domains("host2").get(vm) == "running"
    finally:
        lab.ferry("vm", "delete", "rdm1")
        for link in links:
            link.unlink(missing_ok=True)
        subprocess.run(["losetup", "-d", loop], check=False)


def test_cpu_feature_missing_on_destination(lab: LabEnv, make_vm: Callable[..., None]) -> None:
    from ferry.lab.cpu import hide_cpu_features, restore_cpu

    make_vm("cpu1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "heartbeat")
    vm_cpu = ET.fromstring(lab.virsh("host1", "dumpxml", "cpu1").stdout).find("cpu")
    assert vm_cpu is not None and vm_cpu.findtext("model") == "Westmere", "model changed?"
    hide_cpu_features("host3", ["aes"])  # Westmere has AES-NI; host3 now does not
    try:
        code, rows = check(lab, "cpu1", "--host", "host3")
        assert code == 4 and errors(rows) == {"cpu.incompatible"}, rows.get("host.unreachable")
        finding = rows["cpu.incompatible"][0]
        assert "aes" in str(finding["message"]) and finding["objects"]["vm"] == "cpu1"
        # libvirt, bypassing ferry: the destination's QEMU has no AES for the guest.
        attempt = bypass_migrate(lab, "cpu1", "host1", 3)
        assert attempt.returncode != 0 and "aes" in attempt.stderr, attempt.stderr
        assert lab.domains("host1").get("cpu1") == "running"
        assert "cpu1" not in lab.domains("host3")
        assert check(lab, "cpu1", "--host", "host2")[0] == 0  # a host with AES is fine
    finally:
        restore_cpu("host3")
    assert check(lab, "cpu1", "--host", "host3")[0] == 0
    assert lab.ferry("migrate", "cpu1", "--host", "host3").code == 0
    assert lab.domains("host3").get("cpu1") == "running"


def test_running_block_job_refused_like_libvirt_does(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("job1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--workload", "heartbeat")
    target = "/var/lib/ferry-lab/datastores/shared/job1-mirror.qcow2"
    # A mirror left running (no pivot): the disk is busy with a block job.
    lab.virsh("host1", "blockcopy", "job1", "vda", target, "--transient-job", "--wait",
              "--verbose", "--timeout", "60")
    try:
        code, rows = check(lab, "job1", "--host", "host2")
        assert code == 4 and errors(rows) == {"vm.block-job-running"}
        assert rows["vm.block-job-running"][0]["objects"]["disk"] == "vda"
        attempt = bypass_migrate(lab, "job1", "host1", 2)
        assert attempt.returncode != 0 and "block job" in attempt.stderr.lower()
        assert lab.domains("host1").get("job1") == "running"
    finally:
        lab.virsh("host1", "blockjob", "job1", "vda", "--abort", check=False)
        Path(target).unlink(missing_ok=True)
    assert check(lab, "job1", "--host", "host2")[0] == 0
    assert lab.ferry("migrate", "job1", "--host", "host2").code == 0


def test_network_not_started_on_destination(lab: LabEnv, make_vm: Callable[..., None],
                                            tmp_path: Path) -> None:
    xml = tmp_path / "backup.xml"
    xml.write_text("<network><name>Backup</name><forward mode='bridge'/>"
                   "<bridge name='prod0'/></network>")
    for host in ("host1", "host2"):
        lab.virsh(host, "net-define", str(xml))
    lab.virsh("host1", "net-start", "Backup")  # defined on host2 but not started
    try:
        assert lab.ferry("refresh").code == 0
        make_vm("net1", "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat", "--network", "Backup")
        code, rows = check(lab, "net1", "--host", "host2")
        assert code == 4 and errors(rows) == {"network.inactive"}
        assert rows["network.inactive"][0]["objects"]["network"] == "Backup"
        attempt = bypass_migrate(lab, "net1", "host1", 2)
        assert attempt.returncode != 0 and "Backup" in attempt.stderr
        assert lab.domains("host1").get("net1") == "running"
        # Made right: started on host2; ferry allows and the move works.
        lab.virsh("host2", "net-start", "Backup")
        assert lab.ferry("refresh").code == 0
        assert check(lab, "net1", "--host", "host2")[0] == 0
        assert lab.ferry("migrate", "net1", "--host", "host2").code == 0
        assert lab.domains("host2").get("net1") == "running"
    finally:
        lab.ferry("vm", "delete", "net1")
        for host in ("host1", "host2"):
            lab.virsh(host, "net-destroy", "Backup", check=False)
            lab.virsh(host, "net-undefine", "Backup", check=False)


def test_internal_only_network_refused_until_uplinked(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    # The same internal-only network on host2, so only the seed's rule stands in the way.
    xml = tmp_path / "isolated.xml"
    xml.write_text("<network><name>Isolated</name><bridge name='isol0'/></network>")
    lab.virsh("host2", "net-define", str(xml))
    lab.virsh("host2", "net-start", "Isolated")
    try:
        assert lab.ferry("refresh").code == 0
        make_vm("iso2", "--host", "host3", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "none", "--network", "Isolated")
        code, rows = check(lab, "iso2", "--host", "host2")
        assert code == 4 and errors(rows) == {"network.internal-only"}
        assert rows["network.internal-only"][0]["objects"]["network"] == "Isolated"
        # Made right: its NIC moved to Production, which has an uplink on every host
        # (powered off: the lab guest does not cooperate with hot-unplug).
        mac = ET.fromstring(lab.virsh("host3", "dumpxml", "iso2").stdout).find(
            "devices/interface/mac")
        assert mac is not None
        assert lab.ferry("vm", "stop", "iso2", "--force").code == 0
        lab.virsh("host3", "detach-interface", "iso2", "network", "--mac", mac.get("address", ""),
                  "--config")
        lab.virsh("host3", "attach-interface", "iso2", "network", "Production", "--model",
                  "virtio", "--config")
        assert lab.ferry("vm", "start", "iso2").code == 0
        code, rows = check(lab, "iso2", "--host", "host2")
        assert code == 0, errors(rows)
        assert lab.ferry("migrate", "iso2", "--host", "host2").code == 0
        assert lab.domains("host2").get("iso2") == "running"
    finally:
        lab.ferry("vm", "delete", "iso2")
        lab.virsh("host2", "net-destroy", "Isolated", check=False)
        lab.virsh("host2", "net-undefine", "Isolated", check=False)
