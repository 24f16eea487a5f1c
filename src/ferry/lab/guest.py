"""The lab guest: a Debian cloud kernel plus a tiny busybox initramfs.

Every lab VM boots the same kernel and initramfs directly (no disk image to
install); what a VM does is decided by its kernel command line, built by
:func:`guest_cmdline`. The initramfs holds busybox, the virtio modules, /init
(``guest_init.sh``) and the static guest agent (``guest_agent.c``), which sends
the heartbeats :mod:`ferry.lab.collector` measures downtime with.

Everything is built from Debian packages on this machine, so the lab needs no
download beyond the package mirror, and the result is cached in
:data:`ferry.lab.layout.GUEST_DIR` keyed by a hash of its inputs.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import ipaddress
import json
import lzma
import os
import re
import select
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ferry import validate
from ferry.errors import InputError, LabError
from ferry.lab import layout
from ferry.lab.collector import AGENT_PORT

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
READY_MARKER = "FERRY-READY"
FIRST_HEARTBEAT_MARKER = "FERRY-FIRST-HEARTBEAT"
PROBE_MARKER = "FERRY-PROBE-OK"
# Drivers the guest needs; their dependencies are resolved from the modules.
WANTED_MODULES = ("virtio_pci", "virtio_net", "virtio_blk")
# Bump when the image layout changes in a way the source hash cannot see.
_BUILDER_VERSION = "1"
_SOURCE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    kernel_version: str


@dataclass(frozen=True)
class GuestWorkloads:
    heartbeat: bool = True
    memory_mib: int = 0
    # Writes to /dev/vda, the VM's first virtio disk, when the VM has one.
    disk_writer: bool = False


def guest_cmdline(vm_name: str, address: str, workloads: GuestWorkloads) -> str:
    """The full kernel command line of a lab guest named ``vm_name`` at ``address``."""
    # The name rule of every ferry name (one pattern, one sentence); InputError, in
    # ferry's tree, so the caller's clean-up of a half-made VM runs.
    validate.name("lab VM", vm_name)
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise InputError(f"invalid lab guest address {address!r}") from None
    if workloads.memory_mib < 0:
        raise InputError(f"lab guest memory workload {workloads.memory_mib} MiB is negative")
    params = [
        "console=ttyS0",
        # Every console line costs real time under TCG; keep only warnings.
        "quiet",
        "loglevel=4",
        f"ferry.name={vm_name}",
        f"ferry.ip={ip}/{layout.PRODUCTION_PREFIX}",
        f"ferry.collector={layout.COLLECTOR_ADDRESS}:{layout.COLLECTOR_PORT}",
        f"ferry.listen_port={AGENT_PORT}",
        f"ferry.heartbeat={int(workloads.heartbeat)}",
        f"ferry.memory_mib={workloads.memory_mib}",
        f"ferry.disk_writer={int(workloads.disk_writer)}",
    ]
    return " ".join(params)


def ensure_guest_image(dest_dir: Path = layout.GUEST_DIR) -> GuestImage:
    """Build the guest kernel + initramfs into ``dest_dir``, or reuse a cached build."""
    _require_tools(["apt-get", "apt-cache", "dpkg", "dpkg-query", "gcc"])
    package, version = _kernel_package()
    digest = _source_digest(version)
    cached = _cached_image(dest_dir, digest)
    if cached is not None:
        return cached

    busybox = _busybox_binary()
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ferry-guest-") as tmp_name:
        tmp = Path(tmp_name)
        deb = _download(package, tmp)
        root = tmp / "kernel"
        _run(["dpkg", "-x", str(deb), str(root)], "unpack the kernel package")
        module_dirs = sorted((root / "lib" / "modules").iterdir())
        if len(module_dirs) != 1:
            raise LabError(f"{deb.name} holds {len(module_dirs)} module trees, expected 1")
        kernel_version = module_dirs[0].name
        vmlinuz = root / "boot" / f"vmlinuz-{kernel_version}"
        if not vmlinuz.is_file():
            raise LabError(f"{deb.name} has no /boot/vmlinuz-{kernel_version}")
        modules = resolve_modules(module_dirs[0], WANTED_MODULES)
        agent = tmp / "ferry-agent"
        source = _SOURCE_DIR / "guest_agent.c"
        _run(
            ["gcc", "-static", "-O2", "-Wall", "-o", str(agent), str(source)],
            "compile the guest agent",
        )
        archive = _initramfs(
            init=(_SOURCE_DIR / "guest_init.sh").read_bytes(),
            busybox=busybox.read_bytes(),
            agent=agent.read_bytes(),
            modules=[(path.name.split(".ko")[0] + ".ko", _module_bytes(path)) for path in modules],
        )
        kernel_dest = dest_dir / f"vmlinuz-{kernel_version}"
        initrd_dest = dest_dir / f"initrd-{digest[:16]}.img"
        _atomic_write(kernel_dest, vmlinuz.read_bytes())
        _atomic_write(initrd_dest, gzip.compress(archive, compresslevel=6, mtime=0))
    # Written last: its presence is what marks the build as complete.
    manifest = {
        "digest": digest,
        "kernel": kernel_dest.name,
        "initrd": initrd_dest.name,
        "kernel_version": kernel_version,
        "modules": [path.name for path in modules],
    }
    _atomic_write(dest_dir / "image.json", json.dumps(manifest, indent=2).encode())
    return GuestImage(kernel=kernel_dest, initrd=initrd_dest, kernel_version=kernel_version)


def detect_accel(image: GuestImage, timeout: float = 25) -> str:
    """``"kvm"`` if a guest really boots under KVM here, else ``"tcg"``.

    /dev/kvm being present proves little (nested setups where guests hang are
    common), so this boots the image in probe mode and waits for its marker.
    """
    dest_dir = image.initrd.parent
    key = hashlib.sha256(image.kernel.read_bytes() + image.initrd.read_bytes()).hexdigest()
    cache = dest_dir / "accel"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("digest") == key and cached.get("accel") in ("kvm", "tcg"):
            return str(cached["accel"])
    except (OSError, ValueError, AttributeError):
        pass
    accel = "kvm" if _kvm_usable() and _probe_boots(image, "kvm", timeout) else "tcg"
    with contextlib.suppress(OSError):  # only a cache
        _atomic_write(cache, json.dumps({"digest": key, "accel": accel}).encode())
    return accel


def qemu_boot_command(
    image: GuestImage, accel: str, cmdline: str, memory_mib: int = 1024
) -> list[str]:
    """The qemu-system-x86_64 arguments that boot ``image`` headless (no NIC, no disk)."""
    return [
        "qemu-system-x86_64",
        "-accel", accel,
        "-m", str(memory_mib),
        "-smp", "1",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial", "stdio",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", cmdline,
    ]  # fmt: skip


def resolve_modules(module_tree: Path, wanted: Iterable[str]) -> list[Path]:
    """The module files ``wanted`` needs, in load order (dependencies first).

    A package unpacked with ``dpkg -x`` has no modules.dep (depmod runs at
    install time), so dependencies come from each module's .modinfo section.
    Modules built into the kernel (modules.builtin) are skipped.
    """
    index: dict[str, Path] = {}
    for path in (module_tree / "kernel").rglob("*.ko*"):
        index[_module_name(path.name)] = path
    builtin_file = module_tree / "modules.builtin"
    builtin = set()
    if builtin_file.is_file():
        builtin = {_module_name(Path(line).name) for line in builtin_file.read_text().split()}

    order: list[Path] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if name in builtin or state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise LabError(f"module dependency cycle at {name}")
        path = index.get(name)
        if path is None:
            raise LabError(f"kernel module {name} is neither built in nor in {module_tree}")
        state[name] = "visiting"
        for dep in _modinfo(_module_bytes(path)).get("depends", "").split(","):
            if dep:
                visit(_module_name(dep))
        state[name] = "done"
        order.append(path)

    for name in wanted:
        visit(_module_name(name))
    return order


def _module_name(filename: str) -> str:
    return filename.split(".ko")[0].replace("-", "_")


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.zst"):
        # The standard library has no zstd before 3.14.
        if shutil.which("zstd") is None:
            raise LabError(f"{path.name} is zstd-compressed and the zstd tool is missing")
        result = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            raise LabError(f"cannot decompress {path}: {result.stderr.decode(errors='replace')}")
        return result.stdout
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    return data


def _elf_sections(data: bytes) -> dict[str, bytes]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LabError("not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = []
    for i in range(shnum):
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize
        )
        headers.append((name, offset, size))
    _, str_offset, str_size = headers[shstrndx]
    strtab = data[str_offset : str_offset + str_size]
    sections = {}
    for name, offset, size in headers:
        label = strtab[name : strtab.index(b"\0", name)].decode()
        sections[label] = data[offset : offset + size]
    return sections


def _modinfo(data: bytes) -> dict[str, str]:
    info: dict[str, str] = {}
    for entry in _elf_sections(data).get(".modinfo", b"").split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, value)
    return info


def _is_static_elf(data: bytes) -> bool:
    if data[:4] != b"\x7fELF":
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pt_interp = 3
    return all(
        struct.unpack_from("<I", data, phoff + i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def _busybox_binary() -> Path:
    result = subprocess.run(
        ["dpkg-query", "-L", BUSYBOX_PACKAGE], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise LabError(
            f"package {BUSYBOX_PACKAGE} is not installed (apt-get install {BUSYBOX_PACKAGE})"
        )
    for line in result.stdout.splitlines():
        path = Path(line)
        if path.name == "busybox" and path.is_file() and _is_static_elf(path.read_bytes()):
            return path
    raise LabError(f"package {BUSYBOX_PACKAGE} provides no static busybox binary")


def _kernel_package() -> tuple[str, str]:
    """The versioned kernel package behind the metapackage, and its version."""
    depends = _run(["apt-cache", "depends", KERNEL_METAPACKAGE], "resolve the kernel package")
    match = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)\b", depends)
    if match is None:
        raise LabError(
            f"apt-cache knows no versioned dependency of {KERNEL_METAPACKAGE}; run apt-get update"
        )
    package = match.group(1)
    show = _run(["apt-cache", "show", "--no-all-versions", package], f"look up {package}")
    version = re.search(r"^Version:\s*(\S+)", show, re.MULTILINE)
    if version is None:
        raise LabError(f"apt-cache show {package} reports no version")
    return package, version.group(1)


def _download(package: str, directory: Path) -> Path:
    def attempt() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", package],
            cwd=directory, capture_output=True, text=True, check=False,
        )  # fmt: skip

    result = attempt()
    if result.returncode != 0:
        # Usually stale or missing package lists; refresh once and retry.
        _run(["apt-get", "update"], "refresh the package lists")
        result = attempt()
    if result.returncode != 0:
        raise LabError(f"apt-get download {package} failed: {result.stderr.strip()}")
    debs = sorted(directory.glob(f"{package}_*.deb"))
    if not debs:
        raise LabError(f"apt-get download {package} produced no .deb")
    return debs[0]


def _source_digest(kernel_version: str) -> str:
    digest = hashlib.sha256()
    for part in (
        _BUILDER_VERSION.encode(),
        (_SOURCE_DIR / "guest_agent.c").read_bytes(),
        (_SOURCE_DIR / "guest_init.sh").read_bytes(),
        kernel_version.encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _cached_image(dest_dir: Path, digest: str) -> GuestImage | None:
    try:
        manifest = json.loads((dest_dir / "image.json").read_text())
        if manifest["digest"] != digest:
            return None
        image = GuestImage(
            kernel=dest_dir / manifest["kernel"],
            initrd=dest_dir / manifest["initrd"],
            kernel_version=str(manifest["kernel_version"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if image.kernel.is_file() and image.initrd.is_file():
        return image
    return None


class _Newc:
    """Writer of the ``newc`` cpio format the kernel unpacks as initramfs.

    Written here rather than with cpio(1) so device nodes (/dev/console) and
    ownership come out right without root and the archive is reproducible.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._parts.append(_pad4(header + encoded))
        self._parts.append(_pad4(data))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self._parts)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _initramfs(
    init: bytes, busybox: bytes, agent: bytes, modules: Sequence[tuple[str, bytes]]
) -> bytes:
    directory, regular, symlink, chardev = 0o040755, 0o100755, 0o120777, 0o020600
    archive = _Newc()
    for name in ("bin", "sbin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp"):
        archive.add(name, directory)
    # The kernel opens /dev/console for init before /init can mount devtmpfs.
    archive.add("dev/console", chardev, rdev=(5, 1))
    archive.add("bin/busybox", regular, busybox)
    archive.add("bin/sh", symlink, b"busybox")
    archive.add("init", regular, init)
    archive.add("sbin/ferry-agent", regular, agent)
    for name, data in modules:
        archive.add(f"lib/modules/{name}", 0o100644, data)
    load_order = "".join(f"{name}\n" for name, _ in modules)
    archive.add("etc/ferry-modules", 0o100644, load_order.encode())
    return archive.finish()


def _kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _probe_boots(image: GuestImage, accel: str, timeout: float) -> bool:
    if shutil.which("qemu-system-x86_64") is None:
        raise LabError("qemu-system-x86_64 is missing (apt-get install qemu-system-x86)")
    command = qemu_boot_command(image, accel, "console=ttyS0 quiet ferry.probe=1", memory_mib=256)
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if not ready:
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break  # qemu exited without printing the marker
            seen = seen[-4096:] + chunk
            if PROBE_MARKER.encode() in seen:
                return True
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _require_tools(tools: Iterable[str]) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise LabError(f"tools needed to build the lab guest are missing: {', '.join(missing)}")


def _run(command: Sequence[str], purpose: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(
            f"cannot {purpose}: {' '.join(command)} exited {result.returncode}: {detail}"
        )
    return result.stdout


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
