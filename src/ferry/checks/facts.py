"""What the pre-flight checks judge: plain data, gathered from hosts before any check runs.

Gathering is IO (``ferry.engine.preflight``); judging is pure (``ferry.checks``).
A fact that could not be gathered is ``None`` and the check that needs it says
so (a warning naming what could not be verified), never a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ferry.model import VM, Inventory
from ferry.model import HostSettings as HostSettings  # defined with the host it describes


class MoveKind(StrEnum):
    HOST = "host"  # live migration to another host (VMotion)
    STORAGE = "storage"  # live storage migration on the same host (Storage VMotion)
    BOTH = "both"  # live, host and storage together (shared-nothing)
    COLD = "cold"  # powered-off VM, host and/or datastore


@dataclass(frozen=True)
class MoveRequest:
    vm: str
    dest_host: str | None = None  # None: stays on its host
    dest_datastore: str | None = None  # pool name on the destination host; None: stays
    cold: bool = False
    disks: tuple[str, ...] = ()  # targets to move (vda, ...); empty: all
    disk_format: str = "same"  # same | thin | thick-lazy | thick-eager

    @property
    def kind(self) -> MoveKind:
        if self.cold:
            return MoveKind.COLD
        if self.dest_host and self.dest_datastore:
            return MoveKind.BOTH
        if self.dest_datastore:
            return MoveKind.STORAGE
        return MoveKind.HOST

    def destination(self, current_host: str) -> str:
        """The host the VM runs on after the move: the one named, else the one it is on."""
        return self.dest_host or current_host


@dataclass(frozen=True)
class CpuVerdict:
    """The destination's own judgement of the VM's CPU definition (libvirt's compare)."""

    compatible: bool
    missing_features: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class CpuFeatures:
    """A CPU definition as libvirt expands it: its model and every feature it gives a guest."""

    model: str
    vendor: str | None
    features: frozenset[str]


@dataclass(frozen=True)
class EvcFit:
    """Whether a running VM's CPU fits the EVC mode of the cluster it would move into."""

    cluster: str
    mode: str  # the mode's CPU model
    beyond: tuple[str, ...] | None  # features the VM uses that the mode hides; None: unknown
    detail: str = ""  # why ``beyond`` is unknown


# Formats whose header can name a backing file; an image of any other format is one file,
# whatever its bytes look like.
LAYERED_FORMATS = ("qcow2", "qed", "vmdk", "qcow")


@dataclass(frozen=True)
class ImageFacts:
    """One disk's image as the host holding it reads it: its format and every file behind it.

    Read from the images themselves, not from a definition: a powered-off VM's saved
    definition names no backing file, and its image may have one.
    """

    path: str
    read_as: str | None  # the format the host's storage reads the bytes as; None: on no pool
    backing: tuple[str, ...] = ()  # every file behind it, nearest first
    # why the walk down the chain stopped early (a file on no datastore, a loop); None: whole
    stopped: str | None = None


@dataclass(frozen=True)
class LinkFacts:
    """The host's migration interface as libvirt reports it."""

    interface: str
    up: bool
    speed_mbps: int | None  # None: the driver does not report a speed
    mtu: int | None


@dataclass(frozen=True)
class Reachability:
    """Whether the source host's libvirtd reached the destination's (probed from the source)."""

    reachable: bool
    detail: str = ""


@dataclass(frozen=True)
class MigrationTls:
    """What a host's qemu.conf and its certificate folder say about TLS migration.

    ``files`` are the names present in ``cert_dir``; whether they suffice depends on
    the side the host plays in a move (see ``ferry.checks.host.tls_missing``)."""

    cert_dir: str
    files: frozenset[str] = frozenset()
    # As a destination, the host demands the source's client certificate.
    verify_clients: bool = False


@dataclass(frozen=True)
class PreflightFacts:
    inventory: Inventory
    vm: VM
    request: MoveRequest
    settings: dict[str, HostSettings]  # host name -> settings, for source and destination
    cpu: CpuVerdict | None = None  # destination's verdict on the VM's CPU; None: not gathered
    source_cpu_signature: str | None = None  # host CPU model+features, for host-passthrough
    dest_cpu_signature: str | None = None
    reachability: Reachability | None = None
    links: dict[str, LinkFacts] = field(default_factory=dict)  # host name -> migration link
    block_devices_on_dest: dict[str, bool] = field(default_factory=dict)  # path -> present
    block_jobs: tuple[str, ...] = ()  # disk targets with a block job running now
    migrations_running: dict[str, int] = field(default_factory=dict)  # host -> count
    # host name -> its TLS migration set-up as the host reads it; a host missing
    # here could not be asked, and the check says so
    migration_tls: dict[str, MigrationTls] = field(default_factory=dict)
    memory_committed_mib: dict[str, int] = field(default_factory=dict)  # host -> running VMs
    vcpus_committed: dict[str, int] = field(default_factory=dict)  # host -> running vCPUs
    # disk target -> (capacity, allocation) in bytes, for the target-space check;
    # a disk missing here is reported as not verified.
    disk_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    evc: EvcFit | None = None  # the destination is in an EVC cluster the VM is not already in
    # disk file path -> its image as the source host reads it; a disk missing here
    # is reported as not verified
    images: dict[str, ImageFacts] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """The host the VM runs on after the move (and that runs any disk copy)."""
        return self.request.destination(self.vm.host)
