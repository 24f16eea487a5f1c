"""An older CPU on one lab host: hide CPU features from that host's libvirt.

The lab's hosts share one physical CPU, so CPU compatibility could never fail
between them. libvirt learns what QEMU's software CPU (TCG) offers from its
capability cache; turning a feature off there makes that host's libvirt judge
exactly as it would on a machine without it: it refuses guests whose CPU
needs the feature, at start and on incoming migration, and its CPU comparison
names the feature. QEMU itself is not changed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ferry.errors import LabError
from ferry.lab.hosts import virsh
from ferry.lab.lab import load_state, restart_libvirtd
from ferry.lab.layout import LabHostLayout

_FEATURE = re.compile(r"^[a-z0-9_.-]{1,40}$")


def _cache_dir(host_name: str) -> Path:
    state = load_state()
    if state is None:
        raise LabError("the lab is not up (run 'ferry lab up')")
    return LabHostLayout(state.host(host_name).index).root_dir / "cache-libvirt/qemu/capabilities"


def _backup_dir(host_name: str) -> Path:
    return _cache_dir(host_name).parent / "capabilities.ferry-original"


def hide_cpu_features(host_name: str, features: list[str]) -> None:
    """Make host ``host_name``'s libvirt believe its CPU lacks ``features``."""
    for feature in features:
        if not _FEATURE.match(feature):
            raise LabError(f"invalid CPU feature name {feature!r}")
    cache, backup = _cache_dir(host_name), _backup_dir(host_name)
    if not any(cache.glob("*.xml")):
        raise LabError(f"host {host_name} has no QEMU capability cache yet")
    if not backup.exists():
        shutil.copytree(cache, backup)
    for _attempt in range(3):
        changed = [_hide_in(path, features) for path in sorted(cache.glob("*.xml"))]
        if not any(changed):
            return
        restart_libvirtd(host_name)
        # libvirt may decide to probe QEMU afresh on start and rewrite its cache,
        # undoing the edit; a freshly written cache is trusted on the next start.
        virsh(LabHostLayout(_index(host_name)), "domcapabilities", "--virttype", "qemu")
    raise LabError(f"host {host_name}'s libvirt keeps re-reading QEMU's own CPU; "
                   f"could not hide {', '.join(features)}")


def _hide_in(path: Path, features: list[str]) -> bool:
    """Turn ``features`` off in one cache file; whether anything changed."""
    text = path.read_text()
    start = text.find("<hostCPU type='tcg'")
    end = text.find("</hostCPU>", start)
    if start < 0 or end < 0:
        raise LabError(f"{path.name}: no TCG host CPU in libvirt's capability cache")
    block = text[start:end]
    changed = False
    for feature in features:
        block, count = re.subn(
            rf"<property name='{re.escape(feature)}' type='boolean' value='true'"
            r"(?: migratable='yes')?/>",
            f"<property name='{feature}' type='boolean' value='false'/>", block)
        if count == 0 and f"name='{feature}'" not in block:
            raise LabError(f"libvirt knows no CPU feature {feature!r} for TCG")
        changed = changed or count > 0
    if changed:
        path.write_text(text[:start] + block + text[end:])
    return changed


def _index(host_name: str) -> int:
    state = load_state()
    assert state is not None
    return state.host(host_name).index


def restore_cpu(host_name: str) -> None:
    """Undo :func:`hide_cpu_features`."""
    cache, backup = _cache_dir(host_name), _backup_dir(host_name)
    if not backup.exists():
        return
    shutil.rmtree(cache)
    shutil.move(str(backup), str(cache))
    restart_libvirtd(host_name)
