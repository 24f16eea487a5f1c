"""What the seam promises, held against the fake and against libvirt's test driver.

Each test states one promise of :class:`ferry.virt.base.HostConnection` and runs
twice: on the fake host the unit tests use, and on ferry's libvirt code over
``test:///default``. Where the test driver lacks a libvirt call, that run is
skipped naming the call; the fake still keeps the promise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from seam_subjects import INTERFACE, NETWORK, POOL, VM_NAME, Subject, domain, open_subject

from ferry.errors import FerryError, NotFound, VirtError
from ferry.model import VMState
from ferry.virt import domxml


@pytest.fixture(params=["fake", "libvirt"])
def seam(request: pytest.FixtureRequest) -> Iterator[Subject]:
    subject = open_subject(request.param)
    try:
        yield subject
    finally:
        subject.conn.close()


# -- inventory ----------------------------------------------------------------
def test_facts_describe_the_host(seam: Subject) -> None:
    facts = seam.conn.facts()
    assert facts.hostname and facts.cpus > 0 and facts.memory_mib > 0


def test_list_vms_reports_state_uuid_and_disks(seam: Subject) -> None:
    vms = {vm.name: vm for vm in seam.conn.list_vms()}
    vm = vms[VM_NAME]
    assert vm.state is VMState.RUNNING and vm.persistent and len(vm.uuid) == 36
    assert vm.host == seam.conn.name
    assert [(d.target, d.source) for d in vm.disks] == [("vda", "/guest/diskimage1")]
    assert seam.conn.get_vm(VM_NAME) == vm


def test_get_vm_of_an_unknown_name_is_none(seam: Subject) -> None:
    assert seam.conn.get_vm("no-such-vm") is None


def test_pools_and_networks_are_listed(seam: Subject) -> None:
    pools = {p.name: p for p in seam.conn.list_pools()}
    assert pools[POOL].active and pools[POOL].path == "/default-pool"
    assert pools[POOL].host == seam.conn.name
    assert NETWORK in [n.name for n in seam.conn.list_networks()]


def test_guest_platform_names_a_machine(seam: Subject) -> None:
    seam.lacks("virConnectGetDomainCapabilities")
    assert seam.conn.guest_platform().machine


# -- power ----------------------------------------------------------------------
def test_define_start_destroy_round_trip(seam: Subject) -> None:
    seam.conn.define_vm(domain("vm1"))
    defined = seam.conn.get_vm("vm1")
    assert defined is not None and defined.state is VMState.SHUTOFF and defined.persistent
    assert [(d.target, d.source, d.driver_format) for d in defined.disks] == [
        ("vda", "/default-pool/disk.img", "raw")]
    seam.conn.start_vm("vm1")
    assert seam.conn.get_vm("vm1").state is VMState.RUNNING  # type: ignore[union-attr]
    with pytest.raises(VirtError):
        seam.conn.start_vm("vm1")  # already running
    seam.conn.destroy_vm("vm1")
    after = seam.conn.get_vm("vm1")
    assert after is not None and after.state is VMState.SHUTOFF and after.uuid == defined.uuid


def test_undefine_removes_a_powered_off_vm(seam: Subject) -> None:
    seam.lacks("VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA (undefine with checkpoints)")
    seam.conn.define_vm(domain("vm1"))
    seam.conn.undefine_vm("vm1")
    assert seam.conn.get_vm("vm1") is None


def test_suspend_and_resume(seam: Subject) -> None:
    seam.conn.suspend_vm(VM_NAME)
    assert seam.conn.get_vm(VM_NAME).state is VMState.PAUSED  # type: ignore[union-attr]
    seam.conn.resume_vm(VM_NAME)
    assert seam.conn.get_vm(VM_NAME).state is VMState.RUNNING  # type: ignore[union-attr]


@pytest.mark.parametrize("action", ["start_vm", "destroy_vm", "suspend_vm", "resume_vm",
                                    "shutdown_vm", "undefine_vm"])
def test_power_on_an_unknown_vm_is_not_found(seam: Subject, action: str) -> None:
    with pytest.raises(NotFound):
        getattr(seam.conn, action)("no-such-vm")


def test_a_definition_that_is_no_xml_is_a_virt_error(seam: Subject) -> None:
    with pytest.raises(FerryError):
        seam.conn.define_vm("<domain")


def test_saved_definition_points_disks_at_new_files(seam: Subject) -> None:
    xml = seam.conn.saved_definition(VM_NAME, {"vda": ("/default-pool/new.qcow2", "qcow2")})
    vm = domxml.parse_domain(xml, "x", VMState.SHUTOFF)
    assert vm.name == VM_NAME
    assert [(d.source, d.driver_format) for d in vm.disks] == [
        ("/default-pool/new.qcow2", "qcow2")]
    with pytest.raises(VirtError, match="no disk vdz"):
        seam.conn.saved_definition(VM_NAME, {"vdz": ("/default-pool/x.img", "raw")})


# -- volumes --------------------------------------------------------------------
def test_create_then_find_then_delete_a_volume(seam: Subject) -> None:
    path = seam.conn.create_volume(POOL, "a.img", 2**20, "raw")
    assert path == "/default-pool/a.img"
    assert seam.conn.find_volume(POOL, "a.img") == path
    assert seam.conn.volume_size(path)[0] == 2**20
    seam.conn.delete_volume(POOL, "a.img")
    assert seam.conn.find_volume(POOL, "a.img") is None
    with pytest.raises(NotFound):
        seam.conn.delete_volume(POOL, "a.img")


def test_a_volume_is_not_created_twice(seam: Subject) -> None:
    seam.conn.create_volume(POOL, "a.img", 2**20, "raw")
    with pytest.raises(VirtError):
        seam.conn.create_volume(POOL, "a.img", 2**20, "raw")


def test_an_unknown_pool_is_not_found(seam: Subject) -> None:
    with pytest.raises(NotFound):
        seam.conn.find_volume("no-such-pool", "a.img")
    with pytest.raises(NotFound):
        seam.conn.create_volume("no-such-pool", "a.img", 2**20, "raw")


def test_image_info_reads_the_format_and_knows_only_datastore_files(seam: Subject) -> None:
    path = seam.conn.create_volume(POOL, "a.qcow2", 2**20, "qcow2")
    info = seam.conn.image_info(path)
    assert info is not None and (info.path, info.read_as, info.backing) == (path, "qcow2", None)
    assert seam.conn.image_info("/elsewhere/b.img") is None


def test_clone_converts_into_the_pool(seam: Subject) -> None:
    source = seam.conn.create_volume(POOL, "a.img", 2**20, "raw")
    path = seam.conn.clone_volume(source, "raw", POOL, "b.qcow2", "qcow2")
    assert seam.conn.find_volume(POOL, "b.qcow2") == path
    assert seam.conn.image_info(path).read_as == "qcow2"  # type: ignore[union-attr]
    assert seam.conn.volume_size(path)[0] == 2**20


def test_clone_refuses_a_source_declared_in_another_format(seam: Subject) -> None:
    source = seam.conn.create_volume(POOL, "a.qcow2", 2**20, "qcow2")
    with pytest.raises(VirtError, match="declared raw"):
        seam.conn.clone_volume(source, "raw", POOL, "b.img", "raw")
    assert seam.conn.find_volume(POOL, "b.img") is None


def test_disk_size_of_a_vm_disk(seam: Subject) -> None:
    capacity, _allocation = seam.conn.disk_size(VM_NAME, "vda")
    assert capacity > 0
    with pytest.raises(FerryError):
        seam.conn.disk_size(VM_NAME, "vdz")


def test_write_then_read_keeps_the_bytes_and_the_holes(seam: Subject) -> None:
    seam.lacks("virStorageVolUpload and virStorageVolDownload (volume streams)")
    path = seam.conn.create_volume(POOL, "a.img", 4 * 2**20, "raw")
    data = b"ferry" * 1000
    seam.conn.write_volume(path, [data, 3 * 2**20, b"end"])
    read = list(seam.conn.read_volume(path))
    dense = b"".join(c if isinstance(c, bytes) else bytes(c) for c in read)
    assert dense[:len(data)] == data
    assert dense[len(data):len(data) + 3 * 2**20] == bytes(3 * 2**20)
    assert dense[len(data) + 3 * 2**20:len(data) + 3 * 2**20 + 3] == b"end"
    assert len(dense) == 4 * 2**20
    assert any(isinstance(c, int) for c in read)  # the hole crossed as its length


def test_reserve_allocates_every_byte(seam: Subject) -> None:
    seam.lacks("virStorageVolResize (VIR_STORAGE_VOL_RESIZE_ALLOCATE)")
    path = seam.conn.create_volume(POOL, "a.img", 2**20, "raw")
    seam.conn.reserve_volume(path)
    assert seam.conn.volume_size(path) == (2**20, 2**20)


def test_volume_file_size_is_the_files_not_the_disks(seam: Subject) -> None:
    seam.lacks("virStorageVolGetInfoFlags")
    raw = seam.conn.create_volume(POOL, "a.img", 2**20, "raw")
    assert seam.conn.volume_file_size(raw) == 2**20
    qcow2 = seam.conn.create_volume(POOL, "a.qcow2", 2**30, "qcow2")
    assert seam.conn.volume_file_size(qcow2) < 2**30


# -- block copy -----------------------------------------------------------------
def test_block_copy_then_pivot_moves_the_live_disk_only(seam: Subject) -> None:
    seam.lacks("virDomainBlockCopy")
    target = seam.conn.create_volume(POOL, "copy.img", 2**20, "raw")
    assert seam.conn.block_job(VM_NAME, "vda") is None
    seam.conn.block_copy(VM_NAME, "vda", target, "raw", synchronous=False)
    assert seam.conn.block_jobs(VM_NAME) == ["vda"]
    job = seam.conn.block_job(VM_NAME, "vda")
    while job is not None and not job.ready:
        job = seam.conn.block_job(VM_NAME, "vda")
    seam.conn.pivot_block_copy(VM_NAME, "vda")
    assert seam.conn.block_job(VM_NAME, "vda") is None
    assert [d.source for d in seam.conn.get_vm(VM_NAME).disks] == [target]  # type: ignore[union-attr]
    saved = domxml.parse_domain(seam.conn.saved_definition(VM_NAME, {}), "x", VMState.SHUTOFF)
    assert [d.source for d in saved.disks] == ["/guest/diskimage1"]
    seam.conn.set_persistent_disk(VM_NAME, "vda", target, "raw")
    saved = domxml.parse_domain(seam.conn.saved_definition(VM_NAME, {}), "x", VMState.SHUTOFF)
    assert [d.source for d in saved.disks] == [target]


def test_cancelled_block_copy_leaves_the_source(seam: Subject) -> None:
    seam.lacks("virDomainBlockCopy")
    target = seam.conn.create_volume(POOL, "copy.img", 2**20, "raw")
    seam.conn.block_copy(VM_NAME, "vda", target, "raw", synchronous=False)
    seam.conn.cancel_block_copy(VM_NAME, "vda")
    assert seam.conn.block_job(VM_NAME, "vda") is None
    assert [d.source for d in seam.conn.get_vm(VM_NAME).disks] == [  # type: ignore[union-attr]
        "/guest/diskimage1"]
    with pytest.raises(VirtError):
        seam.conn.pivot_block_copy(VM_NAME, "vda")  # no copy to switch to


def test_a_powered_off_vm_has_no_block_copy(seam: Subject) -> None:
    seam.lacks("virDomainBlockCopy")
    seam.conn.define_vm(domain("vm1"))
    target = seam.conn.create_volume(POOL, "copy.img", 2**20, "raw")
    with pytest.raises(VirtError):
        seam.conn.block_copy("vm1", "vda", target, "raw", synchronous=False)


# -- migration and events -------------------------------------------------------
def test_no_migration_has_no_statistics(seam: Subject) -> None:
    seam.lacks("virDomainGetJobStats")
    assert seam.conn.migration_stats(VM_NAME) is None
    assert seam.conn.migration_stats("no-such-vm") is None


def test_lifecycle_events_name_host_vm_and_event(seam: Subject) -> None:
    heard: list[tuple[str, str, str]] = []
    got = threading.Event()

    def listen(host: str, vm: str, event: str) -> None:
        heard.append((host, vm, event))
        if event == "started":
            got.set()

    seam.conn.subscribe_lifecycle(listen)
    seam.conn.define_vm(domain("vm1"))
    seam.conn.start_vm("vm1")
    assert got.wait(5)
    time.sleep(0.1)
    assert [e for e in heard if e[1] == "vm1"] == [
        (seam.conn.name, "vm1", "defined"), (seam.conn.name, "vm1", "started")]


# -- CPU ------------------------------------------------------------------------
def test_vm_cpu_is_none_without_a_cpu_element(seam: Subject) -> None:
    assert seam.conn.vm_cpu(VM_NAME) is None
    with pytest.raises(NotFound):
        seam.conn.vm_cpu("no-such-vm")


def test_host_cpu_is_a_guest_cpu_definition(seam: Subject) -> None:
    seam.lacks("virConnectGetDomainCapabilities")
    assert "<cpu" in seam.conn.host_cpu("qemu")


# -- probes ---------------------------------------------------------------------
def test_interface_link_knows_only_the_hosts_interfaces(seam: Subject) -> None:
    link = seam.conn.interface_link(INTERFACE)
    assert link is not None and link.up and link.mtu == 1492
    assert seam.conn.interface_link("no-such-nic") is None


def test_an_unreachable_peer_is_reported_and_no_probe_is_left(seam: Subject) -> None:
    verdict = seam.conn.probe_peer("test+tcp://nowhere.invalid/default", "ferry-probe-1")
    assert not verdict.reachable and verdict.detail
    assert seam.conn.get_vm("ferry-probe-1") is None


def test_a_hosts_tls_migration_set_up_names_its_folder_and_files(seam: Subject) -> None:
    tls = seam.conn.migration_tls()
    assert tls.cert_dir.startswith("/") and not tls.cert_dir.endswith("/")
    assert all(isinstance(name, str) and "/" not in name for name in tls.files)
    # Reading it leaves no pool behind on the host.
    assert all(not p.name.startswith("ferry-probe-") for p in seam.conn.list_pools())


def test_a_device_the_host_lacks_is_not_present(seam: Subject) -> None:
    assert not seam.conn.block_device_present("/default-pool/no-such-device")


def test_an_open_connection_is_alive_and_can_be_watched(seam: Subject) -> None:
    assert seam.conn.alive()
    seam.conn.on_close(lambda reason: None)
