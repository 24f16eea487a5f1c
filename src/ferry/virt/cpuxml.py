"""CPU definitions in libvirt's XML: reading them and writing the few ferry needs (pure).

libvirt speaks of two kinds of ``<cpu>``: a host CPU (capabilities, and the
input of the host-CPU ``baselineCPU`` API) and a guest CPU (``mode``,
``match``, per-feature ``policy``). ferry keeps guest definitions throughout
and converts only where an API wants the other kind.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from ferry.checks.facts import CpuFeatures
from ferry.errors import HostError

# A guest feature with one of these policies is present in the guest.
_PRESENT = ("require", "force", "optional")

# Preferred named CPU models, most capable first; the first one domcapabilities
# calls usable wins. Hard-coding one model fails: qemu64 carries svm, which TCG lacks.
_PREFERRED_MODELS = (
    "Skylake-Client-noTSX-IBRS", "Broadwell-noTSX", "Haswell-noTSX", "IvyBridge", "SandyBridge",
    "Westmere", "Nehalem", "Penryn", "core2duo", "EPYC", "Opteron_G3", "kvm64", "qemu64",
)

# How libvirt's CPU comparison names what a host lacks.
_MISSING_FEATURES = re.compile(r"required features?: ([\w\s,.-]+)")


def usable_models(domain_capabilities: str) -> tuple[str, tuple[str, ...]]:
    """(default machine type, named CPU models the hypervisor can run, best first)."""
    root = ET.fromstring(domain_capabilities)
    usable = [m.text or "" for m in root.findall("cpu/mode[@name='custom']/model")
              if m.get("usable") == "yes"]
    ranked = [m for m in _PREFERRED_MODELS if m in usable]
    ranked += [m for m in usable if m not in _PREFERRED_MODELS]
    return root.findtext("machine", "pc"), tuple(ranked)


def missing_features(compare_message: str) -> tuple[str, ...]:
    """The features a failed CPU comparison says the host lacks."""
    found = _MISSING_FEATURES.search(compare_message)
    return tuple(f.strip() for f in found.group(1).split(",")) if found else ()


def named_model(model: str) -> str:
    """The guest definition of a bare named model, nothing added or removed."""
    return (f"<cpu mode='custom' match='exact' check='partial'>"
            f"<model fallback='forbid'>{escape(model)}</model></cpu>")


def same_model(a: str, b: str) -> bool:
    """Whether two guest CPU definitions ask for the same CPU, however libvirt wrote them.

    libvirt adds defaults (``check``) and its own layout to a definition it
    stores, so the texts differ where the CPU does not.
    """
    return _asked(_parse(a)) == _asked(_parse(b))


def _asked(cpu: ET.Element) -> tuple[object, ...]:
    features = frozenset((f.get("name"), f.get("policy", "require"))
                         for f in cpu.findall("feature"))
    return (cpu.get("mode", "custom"), cpu.get("match", "exact"), cpu.findtext("model"),
            cpu.findtext("vendor"), features)


def host_model(domain_capabilities: str) -> str | None:
    """The host-model CPU of a domain-capabilities document as a guest definition.

    None when the hypervisor offers no host-model (no CPU probe for this type).
    """
    root = ET.fromstring(domain_capabilities)
    mode = root.find("cpu/mode[@name='host-model']")
    if mode is None or mode.get("supported") != "yes" or mode.find("model") is None:
        return None
    cpu = ET.Element("cpu", mode="custom", match="exact", check="partial")
    for child in mode:
        if child.tag in ("model", "vendor", "feature"):
            cpu.append(child)
    return ET.tostring(cpu, encoding="unicode")


def as_host_cpu(cpu_xml: str, arch: str = "x86_64") -> str:
    """A guest definition rewritten as the host CPU the host-CPU baseline API reads."""
    root = _parse(cpu_xml)
    host = ET.Element("cpu")
    ET.SubElement(host, "arch").text = root.findtext("arch") or arch
    for tag in ("model", "vendor"):
        value = root.findtext(tag)
        if value:
            ET.SubElement(host, tag).text = value
    for feature in root.findall("feature"):
        if feature.get("policy", "require") in _PRESENT:
            ET.SubElement(host, "feature", name=feature.get("name", ""))
    return ET.tostring(host, encoding="unicode")


def expanded(cpu_xml: str) -> CpuFeatures:
    """Read libvirt's expansion of a definition (every feature listed, model included)."""
    root = _parse(cpu_xml)
    features = frozenset(
        f.get("name", "") for f in root.findall("feature")
        if f.get("policy", "require") in _PRESENT)
    return CpuFeatures(model=root.findtext("model") or "", vendor=root.findtext("vendor"),
                       features=features)


def model_of(cpu_xml: str) -> str:
    return _parse(cpu_xml).findtext("model") or ""


def _parse(cpu_xml: str) -> ET.Element:
    try:
        root = ET.fromstring(cpu_xml)
    except ET.ParseError as err:
        raise HostError(f"unreadable CPU definition: {err}") from None
    if root.tag != "cpu":
        raise HostError(f"not a CPU definition: <{root.tag}>")
    return root
