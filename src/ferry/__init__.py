"""ferry: live migration control plane for libvirt/QEMU hosts."""

__version__ = "0.1.0"
