"""Where the lab puts things and which addresses it uses.

One source of truth shared by the host builder, the guest builder, the
heartbeat collector and the tests. Addresses come from 198.18.0.0/15, the
range set aside for benchmarking (RFC 2544), so the lab never collides with a
real network: the migration network is 198.18.0.0/24, the VM network
``Production`` is 198.19.0.0/24.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LAB_ROOT = Path(os.environ.get("FERRY_LAB_DIR", "/var/lib/ferry-lab"))

# Migration network: a bridge in the root namespace, one veth per host.
MIGRATION_BRIDGE = "ferrymig0"
MIGRATION_GATEWAY = "198.18.0.1"
MIGRATION_PREFIX = 24

# VM network "Production": a bridge inside each host, all joined through one
# bridge in the root namespace, where the heartbeat collector listens.
PRODUCTION_NETWORK = "Production"
PRODUCTION_ROOT_BRIDGE = "ferryprod0"
PRODUCTION_HOST_BRIDGE = "prod0"
COLLECTOR_ADDRESS = "198.19.0.1"
COLLECTOR_PORT = 47000
PRODUCTION_PREFIX = 24

# The internal-only network (no uplink), present on the last host only.
ISOLATED_NETWORK = "Isolated"
ISOLATED_BRIDGE = "isol0"

# Datastores, as libvirt storage pools. The shared one is one folder every
# host sees at the same path (the lab's NFS). Each host's local one is a
# private folder bind-mounted at the same path inside that host only, so a
# check by name or path would be fooled, and only a probe tells them apart.
SHARED_POOL = "shared"
LOCAL_POOL = "local"
SHARED_DATASTORE_DIR = LAB_ROOT / "datastores" / "shared"
LOCAL_DATASTORE_MOUNTPOINT = Path("/var/lib/ferry-local")

# Files the lab keeps for itself.
STATE_FILE = LAB_ROOT / "lab.json"
PKI_DIR = LAB_ROOT / "pki"
GUEST_DIR = LAB_ROOT / "guest"

# Volumes in the shared pool that every lab VM boots from.
GUEST_KERNEL_VOLUME = "ferry-guest-vmlinuz"
GUEST_INITRD_VOLUME = "ferry-guest-initrd.img"


@dataclass(frozen=True)
class LabHostLayout:
    """Names and addresses of lab host number ``index`` (1-based)."""

    index: int

    @property
    def name(self) -> str:
        return f"host{self.index}"

    @property
    def netns(self) -> str:
        return f"ferry-{self.name}"

    @property
    def migration_address(self) -> str:
        return f"198.18.0.{10 + self.index}"

    @property
    def uri(self) -> str:
        """The URI ferry and the other hosts use to reach this host's libvirtd."""
        return f"qemu+tls://{self.migration_address}/system"

    @property
    def root_dir(self) -> Path:
        """Private /etc/libvirt, /run/libvirt, ... of this host live under here."""
        return LAB_ROOT / "hosts" / self.name

    @property
    def local_datastore_dir(self) -> Path:
        return self.root_dir / "local"

    @property
    def mig_veth_root(self) -> str:
        return f"fm{self.index}r"

    @property
    def mig_veth_host(self) -> str:
        return f"fm{self.index}h"

    @property
    def prod_veth_root(self) -> str:
        return f"fp{self.index}r"

    @property
    def prod_veth_host(self) -> str:
        return f"fp{self.index}h"


def guest_address(vm_index: int) -> str:
    """Static address of a lab guest on Production (set on its kernel command line)."""
    if not 1 <= vm_index <= 200:
        raise ValueError("lab guest index must be within 1..200")
    return f"198.19.0.{20 + vm_index}"
