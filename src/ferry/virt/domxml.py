"""Reading libvirt's domain, pool and network XML into ferry's model, and writing domain XML.

Pure functions over strings: no libvirt here, so they are tested with plain
XML. ferry writes every domain definition itself from a typed spec; it never
takes XML from a user.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from ferry.model import VM, CpuAffinity, Disk, FileUse, HostFile, Interface, Network, VMState
from ferry.virt.base import ImageInfo

_LAB_ADDRESS = re.compile(r"\bferry\.ip=([0-9.]+)")


def _text(node: ET.Element | None) -> str | None:
    if node is None or node.text is None:
        return None
    return node.text.strip()


def _parse_disk(node: ET.Element) -> Disk:
    source = node.find("source")
    source_type = node.get("type", "file")
    path: str | None = None
    if source is not None:
        path = source.get("file") or source.get("dev") or source.get("volume") or source.get("name")
    driver = node.find("driver")
    target = node.find("target")
    return Disk(
        target=target.get("dev", "?") if target is not None else "?",
        device=node.get("device", "disk"),
        source_type=source_type if path is not None else "none",
        source=path,
        driver_format=driver.get("type") if driver is not None else None,
        transient=node.find("transient") is not None,
        readonly=node.find("readonly") is not None,
        backing_chain=_backing_chain(node),
    )


def _backing_chain(disk: ET.Element) -> tuple[str, ...]:
    """Every file behind a disk, nearest first, as a live definition nests them."""
    chain: list[str] = []
    node = disk.find("backingStore")
    while node is not None:
        source = node.find("source")
        path = source.get("file") or source.get("dev") if source is not None else None
        if path:
            chain.append(path)
        node = node.find("backingStore")
    return tuple(chain)


# Character devices whose <source path> is a file QEMU writes, or a socket or device node.
_CHAR_DEVICES = ("serial", "parallel", "console", "channel")


def _host_files(root: ET.Element) -> tuple[HostFile, ...]:
    """Every host path the definition names outside its disks, kernel and initrd (fields
    of their own), with how the VM uses it."""
    found: list[HostFile] = []

    def add(what: str, path: str | None, use: FileUse) -> None:
        if path and path.strip() and (path.strip(), use) not in {(f.path, f.use) for f in found}:
            found.append(HostFile(what, path.strip(), use))

    add("device tree", _text(root.find("os/dtb")), FileUse.READ)
    loader = root.find("os/loader")
    if loader is not None:
        # A read-only loader is firmware code from the host's own packages; a writable
        # one is the VM's own image.
        add("firmware", _text(loader),
            FileUse.FIRMWARE if loader.get("readonly") == "yes" else FileUse.READ)
    add("NVRAM", _text(root.find("os/nvram")), FileUse.READ)
    for fs in root.findall("devices/filesystem"):
        source, target = fs.find("source"), fs.find("target")
        path = source.get("dir") or source.get("file") if source is not None else None
        add(f"shared folder {target.get('dir', '?') if target is not None else '?'}", path,
            FileUse.READ)
    for tag in _CHAR_DEVICES:
        for dev in root.findall(f"devices/{tag}"):
            source, kind = dev.find("source"), dev.get("type", "pty")
            path = source.get("path") if source is not None else None
            if kind == "file":
                add(f"{tag} output", path, FileUse.WRITTEN)
            elif kind in ("unix", "dev", "pipe"):
                add(f"{tag} {kind}", path, FileUse.DEVICE)
            log = dev.find("log")
            if log is not None:
                add(f"{tag} log", log.get("file"), FileUse.WRITTEN)
    for node in root.findall("devices/input/source"):
        add("input device", node.get("evdev") or node.get("dev"), FileUse.DEVICE)
    for node in root.findall("devices/tpm/backend/device"):
        add("TPM device", node.get("path"), FileUse.DEVICE)
    return tuple(found)


def _parse_interface(node: ET.Element) -> Interface:
    mac = node.find("mac")
    source = node.find("source")
    model = node.find("model")
    kind = node.get("type", "network")
    network = None
    portgroup = None
    if source is not None:
        # A running VM's live XML shows the network's actual type (type='bridge'
        # for a bridged network) but keeps the network's name on <source>.
        if source.get("network"):
            kind, network = "network", source.get("network")
        else:
            network = source.get("bridge")
        portgroup = source.get("portgroup")
    return Interface(
        mac=mac.get("address", "") if mac is not None else "",
        kind=kind,
        network=network,
        portgroup=portgroup,
        model=model.get("type") if model is not None else None,
    )


def parse_domain(xml: str, host: str, state: VMState, snapshot_count: int = 0) -> VM:
    root = ET.fromstring(xml)
    memory = root.find("memory")
    memory_kib = int(_text(memory) or 0)
    if memory is not None and memory.get("unit", "KiB") not in ("KiB", "k"):
        memory_kib = _to_kib(memory_kib, memory.get("unit", "KiB"))
    vcpu = root.find("vcpu")
    cputune = root.find("cputune")
    vcpupin: tuple[str, ...] = ()
    emulatorpin = None
    if cputune is not None:
        vcpupin = tuple(p.get("cpuset", "") for p in cputune.findall("vcpupin"))
        emu = cputune.find("emulatorpin")
        emulatorpin = emu.get("cpuset") if emu is not None else None
    cpu = root.find("cpu")
    cmdline = _text(root.find("os/cmdline")) or ""
    match = _LAB_ADDRESS.search(cmdline)
    return VM(
        name=_text(root.find("name")) or "",
        uuid=_text(root.find("uuid")) or "",
        host=host,
        state=state,
        memory_kib=memory_kib,
        vcpus=int(_text(vcpu) or 1),
        disks=tuple(_parse_disk(d) for d in root.findall("devices/disk")),
        interfaces=tuple(_parse_interface(i) for i in root.findall("devices/interface")),
        cpu_mode=cpu.get("mode", "custom") if cpu is not None else None,
        cpu_model=_text(cpu.find("model")) if cpu is not None else None,
        affinity=CpuAffinity(
            vcpupin=vcpupin,
            vcpu_cpuset=vcpu.get("cpuset") if vcpu is not None else None,
            emulatorpin=emulatorpin,
        ),
        kernel=_text(root.find("os/kernel")),
        initrd=_text(root.find("os/initrd")),
        host_files=_host_files(root),
        domain_type=root.get("type", "qemu"),
        snapshot_count=snapshot_count,
        lab_address=match.group(1) if match else None,
        cpu_xml=ET.tostring(cpu, encoding="unicode") if cpu is not None else None,
    )


_UNITS = {"b": 1, "bytes": 1, "KB": 1000, "k": 1024, "KiB": 1024, "MB": 10**6, "M": 2**20,
          "MiB": 2**20, "GB": 10**9, "G": 2**30, "GiB": 2**30}


def _to_kib(value: int, unit: str) -> int:
    return value * _UNITS.get(unit, 1024) // 1024


def parse_network(xml: str, host: str, active: bool) -> Network:
    root = ET.fromstring(xml)
    bridge = root.find("bridge")
    forward = root.find("forward")
    return Network(
        host=host,
        name=_text(root.find("name")) or "",
        bridge=bridge.get("name") if bridge is not None else None,
        forward_mode=forward.get("mode", "nat") if forward is not None else None,
        active=active,
        portgroups=tuple(p.get("name", "") for p in root.findall("portgroup")),
    )


def retarget_disks(xml: str, files: dict[str, tuple[str, str]]) -> str:
    """``xml`` with disks ``{target: (file path, format)}`` pointed at new files.

    A block-backed disk becomes a file disk: its data is copied into the file.
    Raises KeyError naming the first target the definition does not have.
    """
    root = ET.fromstring(xml)
    left = dict(files)
    for node in root.findall("devices/disk"):
        target = node.find("target")
        dev = target.get("dev") if target is not None else None
        if dev is None or dev not in left:
            continue
        path, fmt = left.pop(dev)
        node.set("type", "file")
        source = node.find("source")
        if source is None:
            source = ET.SubElement(node, "source")
        kept = {k: v for k, v in source.attrib.items() if k == "startupPolicy"}
        source.attrib.clear()
        source.attrib.update(kept)
        source.set("file", path)
        for child in list(source):
            source.remove(child)  # host-specific children (seclabels, reservations)
        declare_format(node, fmt)
    if left:
        raise KeyError(sorted(left)[0])
    return ET.tostring(root, encoding="unicode")


def declare_format(disk: ET.Element, fmt: str) -> None:
    """``disk`` (a ``<disk>`` element) pointed at one file of format ``fmt``: ``<driver
    type>`` tells QEMU how to read it, so libvirt guesses nothing from its bytes.

    A live definition also shows the chain libvirt opened (``<backingStore>``); the new
    file is a single image ferry made (a chain is refused before any copy), so that
    chain becomes an empty one. A saved definition names no chain and gets none: the
    qcow2 header, read as qcow2, is where an image's backing file is declared.
    """
    driver = disk.find("driver")
    if driver is None:
        driver = ET.Element("driver")
        disk.insert(0, driver)
    driver.set("name", "qemu")
    driver.set("type", fmt)
    shown = disk.findall("backingStore")
    if shown:
        at = list(disk).index(shown[0])
        for old in shown:
            disk.remove(old)
        disk.insert(at, ET.Element("backingStore"))


def copy_target_xml(path: str, fmt: str) -> str:
    """The ``<disk>`` a block copy mirrors into: ferry's new file ``path``, of format
    ``fmt``, with nothing behind it (so libvirt reads no header of it to look)."""
    disk = ET.Element("disk", {"type": "file"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": fmt})
    ET.SubElement(disk, "source", {"file": path})
    ET.SubElement(disk, "backingStore")
    return ET.tostring(disk, encoding="unicode")


# Children of <cpu> that describe the CPU model; the rest (topology, numa,
# cache) belong to the VM and survive a change of model.
_CPU_MODEL_TAGS = ("model", "vendor", "feature")


def with_cpu(xml: str, cpu_xml: str) -> str:
    """``xml`` with its CPU model replaced by the guest CPU definition ``cpu_xml``.

    The VM's own topology, NUMA cells and cache settings are kept.
    """
    root = ET.fromstring(xml)
    new = ET.fromstring(cpu_xml)
    for child in list(new):
        if child.tag not in _CPU_MODEL_TAGS:
            new.remove(child)
    old = root.find("cpu")
    if old is not None:
        for child in old:
            if child.tag not in _CPU_MODEL_TAGS:
                new.append(child)
        index = list(root).index(old)
        root.remove(old)
        root.insert(index, new)
    else:
        os_node = root.find("os")
        root.insert(list(root).index(os_node) + 1 if os_node is not None else len(root), new)
    return ET.tostring(root, encoding="unicode")


def cpu_definition(xml: str) -> str | None:
    """The ``<cpu>`` element of a domain definition, if it has one."""
    node = ET.fromstring(xml).find("cpu")
    return ET.tostring(node, encoding="unicode") if node is not None else None


def parse_volume(xml: str) -> ImageInfo:
    """A storage volume's XML: the format libvirt reads its bytes as, and its backing file."""
    root = ET.fromstring(xml)
    fmt = root.find("target/format")
    backing = root.find("backingStore")
    backing_fmt = backing.find("format") if backing is not None else None
    return ImageInfo(
        path=_text(root.find("target/path")) or "",
        read_as=fmt.get("type", "raw") if fmt is not None else "raw",
        backing=_text(backing.find("path")) if backing is not None else None,
        backing_format=backing_fmt.get("type") if backing_fmt is not None else None,
    )


def pool_path(xml: str) -> str | None:
    return _text(ET.fromstring(xml).find("target/path"))


@dataclass(frozen=True)
class DiskSpec:
    path: str
    fmt: str  # qcow2 | raw
    target: str = "vda"


@dataclass(frozen=True)
class NicSpec:
    network: str
    mac: str


@dataclass(frozen=True)
class DomainSpec:
    """Everything ferry needs to write a lab VM's domain definition."""

    name: str
    memory_mib: int
    vcpus: int
    domain_type: str
    machine: str
    cpu_model: str | None
    kernel: str
    initrd: str
    cmdline: str
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    serial_log: str | None = None


def build_domain_xml(spec: DomainSpec) -> str:
    """The domain XML for a spec; every value is escaped, nothing is passed through raw."""
    cpu = ""
    if spec.cpu_model:
        cpu = (
            "  <cpu mode='custom' match='exact' check='partial'>\n"
            f"    <model fallback='forbid'>{escape(spec.cpu_model)}</model>\n"
            "  </cpu>\n"
        )
    disks = "".join(
        "    <disk type='file' device='disk'>\n"
        f"      <driver name='qemu' type={quoteattr(d.fmt)} cache='none' io='native'/>\n"
        f"      <source file={quoteattr(d.path)}/>\n"
        f"      <target dev={quoteattr(d.target)} bus='virtio'/>\n"
        "    </disk>\n"
        for d in spec.disks
    )
    nics = "".join(
        "    <interface type='network'>\n"
        f"      <mac address={quoteattr(n.mac)}/>\n"
        f"      <source network={quoteattr(n.network)}/>\n"
        "      <model type='virtio'/>\n"
        "    </interface>\n"
        for n in spec.nics
    )
    serial_log = ""
    if spec.serial_log:
        serial_log = f"      <log file={quoteattr(spec.serial_log)} append='on'/>\n"
    return (
        f"<domain type={quoteattr(spec.domain_type)}>\n"
        f"  <name>{escape(spec.name)}</name>\n"
        f"  <memory unit='MiB'>{int(spec.memory_mib)}</memory>\n"
        f"  <vcpu placement='static'>{int(spec.vcpus)}</vcpu>\n"
        "  <os>\n"
        f"    <type arch='x86_64' machine={quoteattr(spec.machine)}>hvm</type>\n"
        f"    <kernel>{escape(spec.kernel)}</kernel>\n"
        f"    <initrd>{escape(spec.initrd)}</initrd>\n"
        f"    <cmdline>{escape(spec.cmdline)}</cmdline>\n"
        "  </os>\n"
        f"{cpu}"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n"
        f"{disks}{nics}"
        "    <serial type='pty'>\n"
        f"{serial_log}"
        "      <target port='0'/>\n"
        "    </serial>\n"
        "    <console type='pty'><target type='serial' port='0'/></console>\n"
        "    <memballoon model='none'/>\n"
        "  </devices>\n"
        "</domain>\n"
    )
