"""Storage VMotion checks: persistence, snapshots, raw devices, datastores, space."""

from dataclasses import replace

from preflight_fixtures import GIB, codes, facts, inventory, only, pool, storage_move, vm

from ferry.checks import storage
from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Status
from ferry.model import Disk

DATA = Disk("vdb", "disk", "file", "/srv/shared/data.raw", "raw")


def test_moved_disks_are_data_disks_not_media_nor_read_only() -> None:
    ro = Disk("vdc", "disk", "file", "/srv/shared/golden.qcow2", "qcow2", readonly=True)
    the_vm = vm(disks=(*vm().disks, DATA, ro))
    assert [d.target for d in storage.moved_disks(facts(vm=the_vm, request=storage_move()))] == [
        "vda", "vdb"]
    named = storage_move(disks=("vdc",))
    assert [d.target for d in storage.moved_disks(facts(vm=the_vm, request=named))] == ["vdc"]
    assert storage.moved_disks(facts(vm=the_vm)) == []  # host move: no disk moves


def test_transient_disk_and_unknown_target_are_errors() -> None:
    the_vm = vm(disks=(replace(vm().disks[0], transient=True), DATA))
    rows = storage.disks_persistent(facts(vm=the_vm, request=storage_move(disks=("vda", "vdb",
                                                                                  "vdz"))))
    assert codes(rows) == ["storage.disk-unknown", "storage.disk-transient"]
    transient = only(rows, "storage.disk-transient")
    assert transient.objects == {"vm": "web1", "disk": "vda", "file": "/srv/shared/web1.qcow2"}
    assert codes(rows, Status.PASS) == ["storage.disk-persistent"]


def test_snapshots_and_backing_chains_are_named() -> None:
    overlay = replace(vm().disks[0], backing_chain=("/srv/shared/web1-base.qcow2",))
    rows = storage.no_snapshots(facts(vm=vm(snapshot_count=2, disks=(overlay,)),
                                      request=storage_move()))
    assert codes(rows) == ["storage.snapshots", "storage.backing-chain"]
    assert "2 snapshot(s)" in rows[0].message
    assert rows[1].objects["backing_file"] == "/srv/shared/web1-base.qcow2"
    assert storage.no_snapshots(facts(request=storage_move()))[0].code == "storage.no-snapshots"


def test_raw_device_modes() -> None:
    lun = Disk("sda", "lun", "block", "/dev/disk/by-id/wwn-1")
    virt = Disk("vdb", "disk", "block", "/dev/vg/data")
    the_vm = vm(disks=(lun, virt))
    rows = storage.raw_device_mappings(facts(vm=the_vm, request=storage_move()))
    assert [(r.code, r.status) for r in rows] == [
        ("storage.lun-mapping-only", Status.WARNING), ("storage.block-to-file", Status.PASS)]
    assert "data stays on the LUN" in rows[0].message
    rows = storage.raw_device_mappings(facts(vm=the_vm, request=storage_move(disk_format="thin")))
    assert codes(rows) == ["storage.lun-conversion"]


def test_target_datastore_missing_or_inactive_on_the_running_host() -> None:
    rows = storage.datastores_visible(facts(request=storage_move(dest_datastore="nope")))
    assert codes(rows) == ["storage.target-missing"]
    assert rows[0].objects == {"vm": "web1", "host": "host1", "datastore": "nope"}
    inv = inventory(pools=(pool("host1", "shared", "/srv/shared", "shared"),
                           pool("host1", "fast", "/srv/fast", "fast@host1", active=False)))
    rows = storage.datastores_visible(facts(inventory=inv, request=storage_move()))
    assert codes(rows) == ["storage.target-inactive"]
    assert codes(rows, Status.PASS) == ["storage.source-visible"]
    # Host and storage together: the target is looked up on the destination host.
    both = MoveRequest(vm="web1", dest_host="host2", dest_datastore="fast")
    assert codes(storage.datastores_visible(facts(request=both))) == ["storage.target-missing"]


def test_space_depends_on_the_format() -> None:
    tight = inventory(pools=(pool("host1", "shared", "/srv/shared", "shared"),
                             pool("host1", "fast", "/srv/fast", "fast@host1", available=10 * GIB)))
    thin = storage.target_space(facts(inventory=tight, request=storage_move(disk_format="thin")))
    assert codes(thin, Status.PASS) == ["storage.space"]
    thick = storage.target_space(facts(inventory=tight,
                                       request=storage_move(disk_format="thick-eager")))
    [row] = thick
    assert row.code == "storage.space-insufficient"
    assert "20.0 GiB" in row.message and "10.0 GiB" in row.message
    assert row.objects == {"vm": "web1", "datastore": "fast", "host": "host1"}


def test_unknown_disk_size_is_not_verified() -> None:
    rows = storage.target_space(facts(request=storage_move(), disk_sizes={}))
    assert codes(rows, Status.WARNING) == ["storage.size-unverified"]
    assert codes(rows, Status.PASS) == ["storage.space"]


def test_single_instance_row_explains_the_mechanism() -> None:
    [row] = storage.single_instance(facts(request=storage_move()))
    assert (row.code, row.status) == ("storage.single-instance", Status.PASS)
    assert "one instance" in row.message
