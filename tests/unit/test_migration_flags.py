"""What a live move asks of libvirt, from its options alone: flags and typed parameters."""

from __future__ import annotations

import libvirt
import pytest

from ferry.errors import VirtError
from ferry.virt.libvirt_flags import BASE_FLAGS, Definitions, migration_flags, migration_params
from ferry.virt.seam.data import DiskCopy, MigrationOptions

DEST = "qemu+tls://198.18.0.12/system"
DOMAIN = """<domain type='qemu'><name>web1</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/srv/shared/web1.qcow2'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>"""


def test_every_move_is_live_peer_to_peer_persistent_and_encrypted_by_default() -> None:
    flags = migration_flags(MigrationOptions(DEST))
    for flag in (libvirt.VIR_MIGRATE_LIVE, libvirt.VIR_MIGRATE_PEER2PEER,
                 libvirt.VIR_MIGRATE_PERSIST_DEST, libvirt.VIR_MIGRATE_UNDEFINE_SOURCE,
                 libvirt.VIR_MIGRATE_ABORT_ON_ERROR, libvirt.VIR_MIGRATE_TLS):
        assert flags & flag
    for flag in (libvirt.VIR_MIGRATE_POSTCOPY, libvirt.VIR_MIGRATE_AUTO_CONVERGE,
                 libvirt.VIR_MIGRATE_UNSAFE, libvirt.VIR_MIGRATE_NON_SHARED_DISK):
        assert not flags & flag
    assert migration_params(MigrationOptions(DEST), "web1") == {}


@pytest.mark.parametrize(("option", "flag"), [
    ({"tls": False}, 0),
    ({"allow_postcopy": True}, libvirt.VIR_MIGRATE_POSTCOPY),
    ({"auto_converge": True}, libvirt.VIR_MIGRATE_AUTO_CONVERGE),
    ({"shared_storage_proven": True}, libvirt.VIR_MIGRATE_UNSAFE),
    # A resume is the interrupted post-copy asked again: post-copy stays set.
    ({"postcopy_resume": True},
     libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME),
])
def test_each_option_adds_its_flag_and_nothing_else(option: dict[str, bool], flag: int) -> None:
    expected = (BASE_FLAGS | libvirt.VIR_MIGRATE_TLS | flag) if option != {"tls": False} \
        else BASE_FLAGS
    assert migration_flags(MigrationOptions(DEST, **option)) == expected


def test_the_throttle_is_passed_only_with_auto_converge() -> None:
    throttle = {"auto_converge_initial_pct": 40, "auto_converge_increment_pct": 20}
    assert migration_params(MigrationOptions(DEST, **throttle), "web1") == {}
    params = migration_params(MigrationOptions(DEST, auto_converge=True, **throttle), "web1")
    assert params == {libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL: 40,
                      libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT: 20}


def test_the_stream_goes_to_the_migration_address_at_the_bandwidth_asked() -> None:
    params = migration_params(MigrationOptions(DEST, migration_address="198.18.0.12",
                                               bandwidth_mibps=100), "web1")
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://198.18.0.12",
                      libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100}


def test_a_bandwidth_limit_holds_in_post_copy_too() -> None:
    params = migration_params(MigrationOptions(DEST, bandwidth_mibps=50, allow_postcopy=True),
                              "web1")
    assert params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 50,
                      libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY: 50}


def test_copied_disks_are_named_and_both_definitions_point_at_the_new_files() -> None:
    options = MigrationOptions(DEST, copy_disks=(DiskCopy("vda", "/srv/local/web1.img", "raw"),))
    assert migration_flags(options) & libvirt.VIR_MIGRATE_NON_SHARED_DISK
    params = migration_params(options, "web1", Definitions(DOMAIN, DOMAIN))
    assert params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == ["vda"]
    for key in (libvirt.VIR_MIGRATE_PARAM_DEST_XML, libvirt.VIR_MIGRATE_PARAM_PERSIST_XML):
        assert "/srv/local/web1.img" in params[key] and 'type="raw"' in params[key]
        assert "/srv/shared/web1.qcow2" not in params[key]


def test_a_disk_the_vm_lacks_or_missing_definitions_are_named() -> None:
    options = MigrationOptions(DEST, copy_disks=(DiskCopy("vdb", "/srv/local/x.img", "raw"),))
    with pytest.raises(VirtError, match="VM web1 has no disk vdb"):
        migration_params(options, "web1", Definitions(DOMAIN, DOMAIN))
    with pytest.raises(VirtError, match="VM web1: its definitions are needed"):
        migration_params(options, "web1")
