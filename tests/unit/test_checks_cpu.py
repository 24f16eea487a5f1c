"""CPU checks: vendor, libvirt's compatibility verdict, host-passthrough."""

from preflight_fixtures import facts, host, inventory, vm

from ferry.checks import cpu
from ferry.checks.facts import CpuVerdict
from ferry.checks.finding import Status


def test_same_vendor_passes_and_mismatch_names_hosts_and_vendors() -> None:
    assert cpu.same_vendor(facts())[0].status is Status.PASS
    inv = inventory(hosts={"host1": host("host1"), "host2": host("host2", vendor="AMD")})
    [row] = cpu.same_vendor(facts(inventory=inv))
    assert (row.code, row.status) == ("cpu.vendor-mismatch", Status.ERROR)
    assert row.objects == {"source_host": "host1", "dest_host": "host2",
                           "source_vendor": "Intel", "dest_vendor": "AMD"}
    assert "Intel" in row.message and "AMD" in row.message


def test_unknown_vendor_is_a_warning() -> None:
    inv = inventory(hosts={"host1": host("host1"), "host2": host("host2", vendor="")})
    [row] = cpu.same_vendor(facts(inventory=inv))
    assert (row.code, row.status) == ("cpu.vendor-unknown", Status.WARNING)


def test_incompatible_cpu_names_missing_features() -> None:
    [row] = cpu.cpu_compatible(facts(cpu=CpuVerdict(False, ("avx2", "bmi2"))))
    assert row.code == "cpu.incompatible" and "avx2, bmi2" in row.message
    assert row.objects["features"] == "avx2, bmi2"
    [row] = cpu.cpu_compatible(facts(cpu=None))
    assert (row.code, row.status) == ("cpu.unverified", Status.WARNING)


def test_passthrough_needs_identical_cpus() -> None:
    [row] = cpu.passthrough_identical(facts())
    assert row.status is Status.NOT_APPLICABLE
    pt = vm(cpu_mode="host-passthrough")
    assert cpu.passthrough_identical(facts(vm=pt))[0].code == "cpu.passthrough"
    [row] = cpu.passthrough_identical(facts(vm=pt, dest_cpu_signature="Intel Xeon Gold 6130"))
    assert (row.code, row.status) == ("cpu.passthrough-mismatch", Status.ERROR)
    assert "Gold 6130" in row.message
    [row] = cpu.passthrough_identical(facts(vm=pt, source_cpu_signature=None))
    assert row.status is Status.WARNING
