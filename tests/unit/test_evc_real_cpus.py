"""EVC rules against real CPUs: host descriptions captured from real Intel and AMD machines.

The control plane runs its real EVC path; each fake host describes its CPU with
one of the files in the shared CPU data, and libvirt's own CPU map (its test
driver's ``baselineCPU``, expansion included) computes baselines and feature
sets. Only the hypervisor is missing, so a host's verdict on a mode here is
ferry's feature arithmetic; in the lab each host's libvirt also judges it.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_plane import plane_over

from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Finding, Status
from ferry.engine.controlplane import ControlPlane
from ferry.errors import InputError, RefusedError
from ferry.model import VM, Disk, VMState
from ferry.virt import cpuxml
from ferry.virt.fake import Backing, FakeHost, FakeWorld
from ferry.virt.libvirt_cpu import CpuCatalog

CPU_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "cpus"
INTEL = ("intel-core-i5-2500", "intel-core-i5-6600", "intel-core-i7-4600u",
         "intel-core2-e6850", "intel-xeon-e5-2630")
AMD = ("amd-a10-5800k", "amd-opteron-6234", "amd-ryzen-7-1800x")

pytestmark = pytest.mark.skipif(not CPU_DATA.is_dir(),
                                reason=f"the real CPU descriptions are not at {CPU_DATA}")


def vm_with(name: str, model: str, state: VMState = VMState.RUNNING) -> VM:
    return VM(name=name, uuid=f"u-{name}", host="", state=state, memory_kib=2**17, vcpus=1,
              disks=(Disk("vda", "disk", "file", f"/srv/shared/{name}.qcow2", "qcow2"),),
              cpu_mode="custom", cpu_model=model, cpu_xml=cpuxml.named_model(model))


@pytest.fixture
def catalog() -> Iterator[CpuCatalog]:
    catalog = CpuCatalog()
    yield catalog
    catalog.close()


@pytest.fixture
def world(catalog: CpuCatalog) -> FakeWorld:
    world = FakeWorld()
    shared = Backing()
    for cpu in INTEL + AMD:
        host = FakeHost(world, cpu, f"uuid-{cpu}")
        host.host_cpu_xml = (CPU_DATA / f"{cpu}.xml").read_text()
        host.cpu_catalog = catalog
        host.add_pool("shared", "/srv/shared", shared)
        host.add_network("Production")
    return world


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


def cluster_of(plane: ControlPlane, name: str, hosts: tuple[str, ...]) -> None:
    plane.create_cluster(name)
    for host in hosts:
        plane.add_cluster_host(name, host)


def refusal(err: pytest.ExceptionInfo[RefusedError], code: str) -> list[Finding]:
    return [f for f in err.value.findings if f.code == code and f.status is Status.ERROR]


def test_auto_mode_is_the_baseline_of_the_intel_hosts(plane: ControlPlane,
                                                       catalog: CpuCatalog) -> None:
    cluster_of(plane, "intel", INTEL)
    report = plane.enable_evc("intel", "auto")
    mode = report.mode
    assert mode is not None
    # libvirt's own cpu-baseline over the same five files gives core2duo (the data's README)
    assert (mode.requested, mode.model, mode.vendor) == ("auto", "core2duo", "Intel")
    assert [c.evc.model for c in plane.list_clusters() if c.evc] == ["core2duo"]
    views = {v.host: v for v in report.hosts}
    assert set(views) == set(INTEL)
    for cpu in INTEL:
        host_features = catalog.expand_cpu((CPU_DATA / f"{cpu}.xml").read_text()).features
        assert set(mode.features) <= host_features, cpu  # every host runs the mode
        assert views[cpu].missing == ()
        assert set(views[cpu].hidden) == host_features - set(mode.features)
    # the oldest CPU loses least; the Skylake hides AVX2 from VMs in the cluster
    assert "avx2" in views["intel-core-i5-6600"].hidden
    assert len(views["intel-core2-e6850"].hidden) < len(views["intel-core-i5-6600"].hidden)
    # the fake hosts offer no KVM: allowed, with the seed's firmware settings as the remedy
    assert len(report.warnings) == len(INTEL)
    assert all("runs VMs emulated" in w and "Intel VT or AMD-V" in w
               for w in report.warnings)


def test_amd_with_intel_is_refused_naming_the_amd_host(plane: ControlPlane) -> None:
    cluster_of(plane, "mixed", ("intel-core-i5-2500", "intel-xeon-e5-2630",
                                "intel-core-i7-4600u", "amd-ryzen-7-1800x"))
    for mode in ("auto", "Westmere"):
        with pytest.raises(RefusedError) as err:
            plane.enable_evc("mixed", mode)
        [finding] = refusal(err, "evc.vendor-mismatch")
        assert finding.objects["host"] == "amd-ryzen-7-1800x"
        assert finding.objects["vendor"] == "AMD"
        assert "amd-ryzen-7-1800x has AMD CPUs" in finding.message
    assert plane.evc_report("mixed").mode is None  # nothing was stored


def test_a_mode_one_host_cannot_run_is_refused_naming_it(plane: ControlPlane) -> None:
    cluster_of(plane, "old", ("intel-core-i5-2500", "intel-xeon-e5-2630", "intel-core2-e6850"))
    with pytest.raises(RefusedError) as err:
        plane.enable_evc("old", "SandyBridge")
    [finding] = refusal(err, "evc.host-unsupported")
    assert finding.objects["host"] == "intel-core2-e6850"
    assert "avx" in finding.objects["features"].split(", ")
    assert "cannot run EVC mode SandyBridge" in finding.message
    assert [f.code for f in err.value.findings] == ["evc.host-unsupported"]  # errors only
    assert plane.enable_evc("old", "Conroe").mode is not None  # the E6850 is a Conroe


def test_a_running_vm_beyond_the_mode_blocks_enable_until_powered_off(
        plane: ControlPlane, world: FakeWorld) -> None:
    world.host("intel-core-i5-6600").add_vm(vm_with("app1", "Haswell-noTSX"))
    world.host("intel-core-i7-4600u").add_vm(
        vm_with("idle1", "Skylake-Client", state=VMState.SHUTOFF))
    world.host("intel-core-i7-4600u").add_vm(vm_with("old1", "Westmere"))
    plane.refresh()
    cluster_of(plane, "haswell", ("intel-core-i5-6600", "intel-core-i7-4600u"))
    with pytest.raises(RefusedError) as err:
        plane.enable_evc("haswell", "SandyBridge")
    [finding] = refusal(err, "evc.vm-beyond-mode")
    assert (finding.objects["vm"], finding.objects["host"]) == ("app1", "intel-core-i5-6600")
    assert {"avx2", "bmi2", "fma"} <= set(finding.objects["features"].split(", "))
    assert "power off app1" in finding.remedy
    plane.power("app1", "force-off")
    report = plane.enable_evc("haswell", "SandyBridge")
    assert report.mode is not None
    # old1 (Westmere) fits the mode and may stay; show names it until it is restarted
    assert report.not_at_mode == ("old1",)


def test_joining_an_evc_cluster_needs_the_vendor_the_mode_and_no_running_vm(
        plane: ControlPlane, world: FakeWorld) -> None:
    cluster_of(plane, "sandy", ("intel-core-i5-2500",))
    plane.enable_evc("sandy", "auto")
    with pytest.raises(RefusedError) as err:
        plane.add_cluster_host("sandy", "amd-opteron-6234")
    assert refusal(err, "evc.vendor-mismatch")[0].objects["host"] == "amd-opteron-6234"
    with pytest.raises(RefusedError) as err:
        plane.add_cluster_host("sandy", "intel-core2-e6850")
    assert refusal(err, "evc.host-unsupported")[0].objects["host"] == "intel-core2-e6850"
    # a newer CPU can still lack one: this Haswell Xeon's description has no xsaveopt
    with pytest.raises(RefusedError) as err:
        plane.add_cluster_host("sandy", "intel-xeon-e5-2630")
    assert refusal(err, "evc.host-unsupported")[0].objects["features"] == "xsaveopt"
    world.host("intel-core-i5-6600").add_vm(vm_with("db1", "Westmere"))
    plane.refresh()
    with pytest.raises(RefusedError) as err:
        plane.add_cluster_host("sandy", "intel-core-i5-6600")
    [busy] = refusal(err, "evc.host-has-vms")
    assert busy.objects["vms"] == "db1"
    assert "maintenance enter intel-core-i5-6600" in busy.remedy
    plane.power("db1", "force-off")
    assert "intel-core-i5-6600" in plane.add_cluster_host("sandy", "intel-core-i5-6600").hosts
    assert [c.hosts for c in plane.list_clusters() if c.name == "sandy"] == [
        ("intel-core-i5-2500", "intel-core-i5-6600")]


def test_preflight_refuses_a_live_move_into_an_evc_cluster_beyond_its_mode(
        plane: ControlPlane, world: FakeWorld) -> None:
    world.host("intel-core-i5-6600").add_vm(vm_with("app2", "Haswell-noTSX"))
    world.host("intel-core-i5-6600").add_vm(vm_with("app3", "Westmere"))
    plane.refresh()
    cluster_of(plane, "sandy", ("intel-core-i5-2500",))
    plane.enable_evc("sandy", "SandyBridge")
    rows = {f.code: f for f in plane.check(MoveRequest("app2", "intel-core-i5-2500"))
            if f.code.startswith("cpu.evc")}
    assert rows["cpu.evc-mode"].status is Status.ERROR
    assert "avx2" in rows["cpu.evc-mode"].objects["features"].split(", ")
    assert rows["cpu.evc-mode"].objects["cluster"] == "sandy"
    fits = [f for f in plane.check(MoveRequest("app3", "intel-core-i5-2500"))
            if f.code == "cpu.evc-mode"]
    assert [f.status for f in fits] == [Status.PASS]
    outside = [f for f in plane.check(MoveRequest("app3", "intel-core-i7-4600u"))
               if f.code == "cpu.evc-mode"]
    assert [f.status for f in outside] == [Status.NOT_APPLICABLE]


def test_bad_modes_are_refused_naming_what_was_wrong(plane: ControlPlane) -> None:
    plane.create_cluster("empty")
    with pytest.raises(InputError, match="no hosts to compute an 'auto' mode"):
        plane.enable_evc("empty", "auto")
    with pytest.raises(InputError, match="CPU model Pentium9000 is not one libvirt"):
        plane.enable_evc("empty", "Pentium9000")
    with pytest.raises(InputError, match="invalid CPU model name"):
        plane.enable_evc("empty", "a b")
    # the seed's first method: a new, empty cluster with a named mode, hosts moved in later
    report = plane.enable_evc("empty", "Nehalem")
    assert report.mode is not None and report.mode.vendor is None and report.hosts == ()
    with pytest.raises(InputError, match="already has EVC mode Nehalem"):
        plane.enable_evc("empty", "Westmere")
    assert plane.disable_evc("empty").mode is None
    with pytest.raises(InputError, match="does not have EVC enabled"):
        plane.disable_evc("empty")
