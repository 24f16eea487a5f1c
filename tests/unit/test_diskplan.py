"""Which files a disk move creates: names, formats, and which sources are ferry's to delete."""

from __future__ import annotations

from preflight_fixtures import pool, vm

from ferry.engine.diskplan import plan_moves
from ferry.model import Disk

POOLS = [pool("host1", "shared", "/srv/shared", "ds-shared"),
         pool("host1", "iso", "/srv/shared/iso", "ds-iso")]


def test_every_writable_data_disk_moves_and_the_cdrom_stays() -> None:
    moves = plan_moves(vm(), POOLS, "same")
    assert [(m.disk.target, m.target_volume, m.fmt, m.preallocation) for m in moves] == [
        ("vda", "web1-vda.qcow2", "qcow2", None)]
    assert moves[0].source_pool is not None and moves[0].source_pool.name == "shared"


def test_formats_choose_file_format_and_preallocation() -> None:
    assert [(m.fmt, m.preallocation, m.target_volume) for m in plan_moves(
        vm(), POOLS, "thick-eager")] == [("raw", "full", "web1-vda.img")]
    assert [(m.fmt, m.preallocation) for m in plan_moves(vm(), POOLS, "thick-lazy")] == [
        ("raw", "falloc")]
    assert [(m.fmt, m.preallocation) for m in plan_moves(vm(), POOLS, "thin")] == [
        ("qcow2", None)]


def test_a_virtual_mode_block_disk_becomes_a_raw_file_and_its_device_is_never_deleted() -> None:
    disks = (Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),
             Disk("vdb", "disk", "block", "/dev/mapper/lun7", "raw"),
             Disk("sda", "lun", "block", "/dev/sdx", "raw"))
    moves = plan_moves(vm(disks=disks), POOLS, "same", ("vdb", "sda"))
    # The physical-mode LUN has no data ferry copies: only its mapping could move.
    assert [(m.disk.target, m.fmt, m.target_volume) for m in moves] == [
        ("vdb", "raw", "web1-vdb.img")]
    assert moves[0].source_pool is None
