import xml.etree.ElementTree as ET
from dataclasses import replace

from ferry.model import VMState
from ferry.virt import cpuxml
from ferry.virt.domxml import (
    DiskSpec,
    DomainSpec,
    NicSpec,
    build_domain_xml,
    copy_target_xml,
    parse_domain,
    retarget_disks,
    with_cpu,
)

SPEC = DomainSpec(
    name="web1", memory_mib=1024, vcpus=2, domain_type="qemu", machine="pc-i440fx-7.2",
    cpu_model="Nehalem", kernel="/srv/shared/vmlinuz", initrd="/srv/shared/initrd.img",
    cmdline="console=ttyS0 ferry.name=web1 ferry.ip=198.19.0.21/24",
    disks=(DiskSpec("/srv/shared/web1-disk0.qcow2", "qcow2"),),
    nics=(NicSpec("Production", "52:54:00:aa:bb:cc"),),
)


def test_written_xml_parses_back_to_the_same_vm() -> None:
    vm = parse_domain(build_domain_xml(SPEC), "host1", VMState.RUNNING)
    assert (vm.name, vm.memory_mib, vm.vcpus, vm.domain_type) == ("web1", 1024, 2, "qemu")
    assert vm.cpu_mode == "custom" and vm.cpu_model == "Nehalem"
    assert [d.source for d in vm.disks] == ["/srv/shared/web1-disk0.qcow2"]
    assert [(i.network, i.mac) for i in vm.interfaces] == [("Production", "52:54:00:aa:bb:cc")]
    assert vm.lab_address == "198.19.0.21"
    assert not vm.affinity.pinned
    assert [p for _, p in vm.files()] == ["/srv/shared/web1-disk0.qcow2", "/srv/shared/vmlinuz",
                                          "/srv/shared/initrd.img"]


def test_values_are_escaped_not_injected() -> None:
    spec = DomainSpec(**{**SPEC.__dict__, "cmdline": "x</cmdline><devices/>"})
    root = ET.fromstring(build_domain_xml(spec))
    assert root.findtext("os/cmdline") == "x</cmdline><devices/>"


def test_parse_affinity_cdrom_transient_and_snapshot_chain() -> None:
    xml = """<domain type='kvm'><name>db</name><uuid>1</uuid><memory unit='KiB'>2097152</memory>
    <vcpu placement='static' cpuset='0-1'>2</vcpu>
    <cputune><vcpupin vcpu='0' cpuset='1'/><emulatorpin cpuset='0'/></cputune>
    <cpu mode='host-passthrough'/>
    <devices>
      <disk type='block' device='cdrom'><source dev='/dev/loop0'/><target dev='hdc'/></disk>
      <disk type='file' device='disk'><driver type='qcow2'/><source file='/a/top.qcow2'/>
        <backingStore type='file'><source file='/a/base.qcow2'/></backingStore>
        <target dev='vda'/><transient/></disk>
      <interface type='network'><mac address='52:54:00:00:00:09'/>
        <source network='Isolated' portgroup='db'/></interface>
    </devices></domain>"""
    vm = parse_domain(xml, "h", VMState.SHUTOFF, snapshot_count=2)
    assert vm.memory_mib == 2048 and vm.cpu_mode == "host-passthrough"
    assert vm.affinity.pinned and vm.affinity.vcpupin == ("1",)
    assert vm.affinity.vcpu_cpuset == "0-1" and vm.affinity.emulatorpin == "0"
    cdrom, disk = vm.disks
    assert (cdrom.device, cdrom.source_type, cdrom.source) == ("cdrom", "block", "/dev/loop0")
    assert disk.transient and disk.backing_store == "/a/base.qcow2"
    assert vm.interfaces[0].portgroup == "db" and vm.snapshot_count == 2


def test_live_xml_of_bridged_network_still_names_the_network() -> None:
    # As libvirt 9.0 shows a running VM on a <forward mode='bridge'/> network.
    xml = """<domain type='qemu'><name>vm</name><uuid>1</uuid><memory>1024</memory>
    <devices><interface type='bridge'><mac address='52:54:00:0e:2c:ab'/>
      <source network='Production' portid='6878' bridge='prod0'/><target dev='vnet0'/>
    </interface><interface type='bridge'><mac address='52:54:00:0e:2c:ac'/>
      <source bridge='br-storage'/></interface></devices></domain>"""
    net, plain = parse_domain(xml, "h", VMState.RUNNING).interfaces
    assert (net.kind, net.network) == ("network", "Production")
    assert (plain.kind, plain.network) == ("bridge", "br-storage")


def test_retarget_points_a_disk_at_its_new_file_and_keeps_the_rest() -> None:
    xml = build_domain_xml(SPEC).replace(
        "</devices>",
        "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
        "<source dev='/dev/mapper/lun7'><seclabel model='dac' relabel='no'/></source>"
        "<target dev='vdb' bus='virtio'/></disk></devices>")
    moved = parse_domain(retarget_disks(xml, {
        "vda": ("/new/web1-vda.img", "raw"), "vdb": ("/new/web1-vdb.img", "raw")}),
        "host2", VMState.SHUTOFF)
    by_target = {d.target: d for d in moved.disks}
    assert (by_target["vda"].source, by_target["vda"].driver_format) == (
        "/new/web1-vda.img", "raw")
    # The virtual-mode block disk becomes a file disk; its host-specific label goes.
    assert (by_target["vdb"].source_type, by_target["vdb"].source) == (
        "file", "/new/web1-vdb.img")
    assert "seclabel" not in retarget_disks(xml, {"vdb": ("/x.img", "raw")})
    assert [(i.network, i.mac) for i in moved.interfaces] == [("Production", "52:54:00:aa:bb:cc")]


def declared(disk: ET.Element) -> tuple[str | None, str | None, list[str]]:
    """(driver name, driver type, what each <backingStore> holds) of a <disk>."""
    driver = disk.find("driver")
    return (driver.get("name") if driver is not None else None,
            driver.get("type") if driver is not None else None,
            [ET.tostring(b, encoding="unicode").strip() for b in disk.iter("backingStore")])


def test_every_disk_ferry_writes_declares_its_format() -> None:
    spec = replace(SPEC, disks=(DiskSpec("/srv/a.qcow2", "qcow2"),
                                DiskSpec("/srv/b.img", "raw", "vdb")))
    disks = ET.fromstring(build_domain_xml(spec)).findall("devices/disk")
    # No chain is pinned: a qcow2's backing file is declared in its header, read as qcow2.
    assert [declared(d) for d in disks] == [("qemu", "qcow2", []), ("qemu", "raw", [])]
    # A block copy's target is ferry's new file, and nothing is behind it.
    mirror = ET.fromstring(copy_target_xml("/srv/fast/web1-vda.img", "raw"))
    assert declared(mirror) == ("qemu", "raw", ["<backingStore />"])
    assert mirror.find("source").get("file") == "/srv/fast/web1-vda.img"  # type: ignore[union-attr]


def test_retarget_declares_the_new_files_format_and_drops_the_old_chain() -> None:
    # A qcow2 overlay with its chain as a live definition shows it, and a disk with no
    # <driver> at all, as a saved one can be.
    xml = """<domain type='qemu'><name>v</name><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>
        <source file='/srv/shared/v.qcow2'/>
        <backingStore type='file'><format type='qcow2'/><source file='/srv/shared/b.qcow2'/>
          <backingStore/></backingStore>
        <target dev='vda'/></disk>
      <disk type='file' device='disk'><source file='/srv/shared/d.img'/><target dev='vdb'/>
      </disk></devices></domain>"""
    moved = ET.fromstring(retarget_disks(xml, {"vda": ("/new/v-vda.img", "raw"),
                                               "vdb": ("/new/v-vdb.qcow2", "qcow2")}))
    vda, vdb = moved.findall("devices/disk")
    assert declared(vda) == ("qemu", "raw", ["<backingStore />"])  # the chain shown: none
    assert vda.find("driver").get("cache") == "none"  # type: ignore[union-attr]
    assert declared(vdb) == ("qemu", "qcow2", [])  # as saved: no chain named
    parsed = parse_domain(ET.tostring(moved, encoding="unicode"), "h", VMState.SHUTOFF)
    assert [(d.source, d.backing_chain) for d in parsed.disks] == [
        ("/new/v-vda.img", ()), ("/new/v-vdb.qcow2", ())]


def test_retarget_names_a_disk_the_vm_does_not_have() -> None:
    try:
        retarget_disks(build_domain_xml(SPEC), {"vdz": ("/x.img", "raw")})
    except KeyError as err:
        assert err.args[0] == "vdz"
    else:
        raise AssertionError("an unknown disk was accepted")


def test_with_cpu_swaps_the_model_and_keeps_the_vms_own_topology() -> None:
    xml = build_domain_xml(SPEC).replace(
        "</cpu>", "<topology sockets='1' dies='1' cores='2' threads='1'/></cpu>")
    mode = ("<cpu mode='custom' match='exact'><model fallback='forbid'>Westmere</model>"
            "<vendor>Intel</vendor><feature policy='disable' name='aes'/></cpu>")
    cpu = ET.fromstring(with_cpu(xml, mode)).find("cpu")
    assert cpu is not None
    assert cpu.findtext("model") == "Westmere" and cpu.findtext("vendor") == "Intel"
    assert [(f.get("policy"), f.get("name")) for f in cpu.findall("feature")] == [
        ("disable", "aes")]
    topology = cpu.find("topology")
    assert topology is not None and topology.get("cores") == "2"
    no_cpu = build_domain_xml(replace(SPEC, cpu_model=None))
    assert ET.fromstring(with_cpu(no_cpu, mode)).findtext("cpu/model") == "Westmere"


def test_same_model_ignores_what_libvirt_adds_when_it_stores_a_cpu() -> None:
    asked = ("<cpu mode='custom' match='exact'><model fallback='forbid'>EPYC</model>"
             "<vendor>AMD</vendor><feature policy='require' name='acpi'/>"
             "<feature policy='disable' name='vme'/></cpu>")
    stored = ("<cpu mode='custom' match='exact' check='partial'>\n"
              "  <model fallback='forbid'>EPYC</model>\n  <vendor>AMD</vendor>\n"
              "  <feature policy='disable' name='vme'/>\n  <feature name='acpi'/>\n</cpu>")
    assert cpuxml.same_model(asked, stored)
    assert not cpuxml.same_model(asked, stored.replace("policy='disable'", "policy='require'"))
    assert not cpuxml.same_model(asked, cpuxml.named_model("EPYC"))
