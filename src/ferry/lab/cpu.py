"""An older CPU on one lab host: its QEMU switches CPU features off.

The lab's hosts share one physical CPU, so CPU compatibility could never fail
between them. For one host, ferry puts a wrapper over QEMU's binary inside
that host's own mount namespace; the wrapper adds ``-global
x86_64-cpu.FEATURE=off``, which QEMU applies to every CPU model, its ``max``
model included. libvirt on that host then probes a CPU without the feature
and judges (``compareHypervisorCPU``, start, incoming migration) as it would
on an older machine, and guests started there really lack the feature.
"""

from __future__ import annotations

import re
import shlex

from ferry.errors import LabError
from ferry.lab import hosts as hostlib
from ferry.lab.lab import load_state, restart_libvirtd
from ferry.lab.layout import LabHostLayout

_FEATURE = re.compile(r"^[a-z0-9_.-]{1,40}$")
QEMU_MODULE_DIR = "/usr/lib/x86_64-linux-gnu/qemu"
# Debian's QEMU looks for firmware here (its built-in search path, relocated
# to wherever the binary runs from; the wrapper's binary is elsewhere).
QEMU_DATA_DIRS = ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu")


def _layout(host_name: str) -> LabHostLayout:
    state = load_state()
    if state is None:
        raise LabError("the lab is not up (run 'ferry lab up')")
    return LabHostLayout(state.host(host_name).index)


def hide_cpu_features(host_name: str, features: list[str]) -> None:
    """From now on, host ``host_name``'s QEMU offers no ``features``."""
    if not features:
        raise LabError("name at least one CPU feature to hide")
    for feature in features:
        if not _FEATURE.match(feature):
            raise LabError(f"invalid CPU feature name {feature!r}")
    lay = _layout(host_name)
    real = shlex.quote(str(hostlib.qemu_real(lay)))
    globals_ = " ".join(f"-global x86_64-cpu.{f}=off" for f in features)
    wrapper = hostlib.qemu_wrapper(lay)
    # QEMU finds its modules and firmware relative to its own path, which is
    # no longer /usr/bin: point it at the installed ones.
    wrapper.write_text(
        "#!/bin/sh\n"
        f"QEMU_MODULE_DIR={QEMU_MODULE_DIR}\nexport QEMU_MODULE_DIR\n"
        f'exec {real} {" ".join(f"-L {d}" for d in QEMU_DATA_DIRS)} {globals_} "$@"\n')
    wrapper.chmod(0o755)
    restart_libvirtd(host_name)


def restore_cpu(host_name: str) -> None:
    """Give the host its full CPU back (no-op if nothing was hidden)."""
    wrapper = hostlib.qemu_wrapper(_layout(host_name))
    if not wrapper.exists():
        return
    wrapper.unlink()
    restart_libvirtd(host_name)
