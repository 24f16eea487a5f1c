from dataclasses import replace

from ferry.checks.facts import MoveRequest, PreflightFacts
from ferry.checks.finding import Finding, Status
from ferry.checks.vmotion import networks_present, storage_shared, vm_running
from ferry.model import VM, Disk, Host, Interface, Inventory, Network, Pool, VMState


def check_vmotion(inv: Inventory, vm: VM, dest: str) -> list[Finding]:
    """The state, storage and network rows for moving ``vm`` to ``dest``, in that order."""
    facts = PreflightFacts(inventory=inv, vm=vm, request=MoveRequest(vm.name, dest_host=dest),
                           settings={})
    return [row for check in (vm_running, storage_shared, networks_present)
            for row in check(facts)]


def pool(host: str, name: str, path: str, datastore: str) -> Pool:
    return Pool(host, name, "dir", path, True, 100, 0, 100, datastore=datastore)


def net(host: str, name: str) -> Network:
    return Network(host, name, "br0", "bridge", True)


VM1 = VM(
    name="web1", uuid="u", host="host1", state=VMState.RUNNING, memory_kib=1024 * 1024, vcpus=1,
    disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
    interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),),
    kernel="/srv/shared/vmlinuz",
)


def inventory(pools: list[Pool], networks: list[Network]) -> Inventory:
    hosts = {h: Host(h, f"qemu+tls://{h}/system") for h in ("host1", "host2")}
    return Inventory(hosts=hosts, vms={"web1": VM1}, pools=tuple(pools), networks=tuple(networks))


GOOD = inventory(
    [pool("host1", "shared", "/srv/shared", "shared"), pool("host2", "nfs", "/mnt/x", "shared")],
    [net("host1", "Production"), net("host2", "Production")],
)


def codes(findings: list, status: Status = Status.ERROR) -> list[str]:
    return [f.code for f in findings if f.status is status]


def test_all_requirements_met_passes_every_row() -> None:
    findings = check_vmotion(GOOD, VM1, "host2")
    assert codes(findings) == []
    assert codes(findings, Status.PASS) == ["vm.running", "storage.shared", "storage.shared",
                                            "network.present"]


def test_shared_by_datastore_identity_not_by_path() -> None:
    # Same path on both hosts, but the probe said they are different storage.
    inv = inventory(
        [pool("host1", "local", "/srv/shared", "local@host1"),
         pool("host2", "local", "/srv/shared", "local@host2")],
        [net("host1", "Production"), net("host2", "Production")])
    findings = check_vmotion(inv, VM1, "host2")
    bad = [f for f in findings if f.code == "storage.not-shared"]
    assert len(bad) == 2
    assert bad[0].objects["file"] == "/srv/shared/web1.qcow2"
    assert "host2" in bad[0].message and "local@host1" in bad[0].message


def test_every_failure_is_reported_not_only_the_first() -> None:
    vm = replace(VM1, state=VMState.SHUTOFF)
    inv = inventory([pool("host1", "shared", "/srv/shared", "shared")],
                    [net("host1", "Production"), net("host2", "production")])
    found = codes(check_vmotion(inv, vm, "host2"))
    assert found == ["vm.not-running", "storage.not-shared", "storage.not-shared",
                     "network.case-mismatch"]


def test_case_mismatch_names_both_spellings() -> None:
    inv = replace(GOOD, networks=(net("host1", "Production"), net("host2", "production")))
    [finding] = [f for f in check_vmotion(inv, VM1, "host2") if f.code == "network.case-mismatch"]
    assert "'Production'" in finding.message and "'production'" in finding.message
    assert finding.objects["dest_network"] == "production"


def test_missing_network_and_unmanaged_file() -> None:
    vm = replace(VM1, kernel="/boot/vmlinuz")
    inv = replace(GOOD, networks=(net("host1", "Production"),))
    findings = check_vmotion(inv, vm, "host2")
    assert "network.missing" in codes(findings)
    [unmanaged] = [f for f in findings if f.code == "storage.unmanaged"]
    assert unmanaged.objects["file"] == "/boot/vmlinuz"


LOCAL = inventory(
    [pool("host1", "shared", "/srv/shared", "shared"), pool("host2", "nfs", "/mnt/x", "shared"),
     pool("host1", "local", "/var/lib/local", "local@host1")],
    [net("host1", "Production"), net("host2", "Production")],
)


def remedies(vm: VM, inv: Inventory = LOCAL) -> dict[str, str]:
    """The remedy of each failing storage row, by the file it names."""
    return {f.objects["file"]: f.remedy for f in check_vmotion(inv, vm, "host2")
            if f.code.startswith("storage.") and f.status is Status.ERROR}


def test_media_remedy_names_the_image_of_its_drive() -> None:
    vm = replace(VM1, disks=(*VM1.disks,
                             Disk("fda", "floppy", "file", "/var/lib/local/boot.img", "raw"),
                             Disk("hdc", "cdrom", "file", "/var/lib/local/debian.iso", "raw")))
    found = remedies(vm)
    floppy, cdrom = found["/var/lib/local/boot.img"], found["/var/lib/local/debian.iso"]
    assert "floppy image" in floppy and "ISO" not in floppy
    assert "'virsh change-media web1 fda --eject'" in floppy
    assert "'virsh change-media web1 fda NEW-PATH --update'" in floppy
    assert "put the ISO on a datastore that host1 and host2 share" in cdrom
    assert "floppy" not in cdrom and "'virsh change-media web1 hdc --eject'" in cdrom
    # On no datastore at all, the floppy's remedy still names a floppy image.
    unmanaged = replace(vm, disks=(Disk("fda", "floppy", "file", "/tmp/boot.img", "raw"),))
    assert "floppy image" in remedies(unmanaged)["/tmp/boot.img"]


def test_kernel_remedy_copies_the_file_and_disk_remedy_stays_storage_vmotion() -> None:
    vm = replace(VM1, disks=(Disk("vda", "disk", "file", "/var/lib/local/web1.qcow2", "qcow2"),),
                 kernel="/var/lib/local/vmlinuz", initrd="/var/lib/local/initrd.img")
    found = remedies(vm)
    kernel, initrd = found["/var/lib/local/vmlinuz"], found["/var/lib/local/initrd.img"]
    for kind, remedy in (("kernel", kernel), ("initrd", initrd)):
        assert "Storage VMotion" not in remedy
        assert f"copy the {kind} file to a datastore that host1 and host2 share" in remedy
        assert f"<{kind}>" in remedy and "virsh edit web1" in remedy
        assert "start it again" in remedy  # the running VM keeps the path it started with
        assert remedy.endswith("or choose a destination that sees local@host1")
    assert "Storage VMotion" in found["/var/lib/local/web1.qcow2"]
    # Powered off, the new path counts at its next start: no restart to ask for.
    off = remedies(replace(vm, state=VMState.SHUTOFF))
    assert "start it again" not in off["/var/lib/local/vmlinuz"]
    # A kernel on no datastore is copied the same way, not "moved into a pool".
    unmanaged = remedies(replace(VM1, kernel="/boot/vmlinuz"))
    assert "copy the kernel file to a datastore that host1 and host2 share" in \
        unmanaged["/boot/vmlinuz"]
