"""EVC in the lab: real libvirt computes and judges modes; VMs start at the mode and move.

The lab's hosts share one CPU, so a host that cannot run a mode is made with
``ferry lab cpu`` (its QEMU loses a feature), as an older machine would be.
Assertions read the hosts through virsh, not through ferry.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator

import pytest
from conftest import LabEnv, Result

pytestmark = pytest.mark.lab


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    return result


def live_cpu_model(lab: LabEnv, host: str, vm: str) -> str | None:
    return ET.fromstring(lab.virsh(host, "dumpxml", vm).stdout).findtext("cpu/model")


def heartbeats_continue(lab: LabEnv, vms: list[str], beats: int = 50) -> None:
    """Each VM's heartbeat sequence advances by ``beats`` (one every 100 ms) from now."""
    start = {vm: lab.collector.last_seq(vm) or 0 for vm in vms}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all((lab.collector.last_seq(vm) or 0) >= start[vm] + beats for vm in vms):
            return
        time.sleep(0.5)
    raise AssertionError({vm: (start[vm], lab.collector.last_seq(vm)) for vm in vms})


@pytest.fixture
def cluster(lab: LabEnv) -> Iterator[Callable[[str], str]]:
    """Creates clusters; afterwards takes their hosts out and deletes them."""
    made: list[str] = []

    def create(name: str) -> str:
        ok(lab.ferry("cluster", "create", name))
        made.append(name)
        return name

    yield create
    for name in made:
        lab.ferry("cluster", "evc", "disable", name)
        for host in lab.hosts:
            lab.ferry("cluster", "remove-host", name, host)
        lab.ferry("cluster", "delete", name)


def test_a_vm_beyond_the_mode_blocks_enable_and_vms_start_at_the_mode(
    lab: LabEnv, make_vm: Callable[..., None], cluster: Callable[[str], str]
) -> None:
    from ferry.lab.cpu import hide_cpu_features, restore_cpu

    name = cluster("evclab")
    ok(lab.ferry("cluster", "add-host", name, "host2"))
    ok(lab.ferry("cluster", "add-host", name, "host3"))
    make_vm("evcvm", "--host", "host2", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "heartbeat")
    assert live_cpu_model(lab, "host2", "evcvm") == "Westmere"  # the lab's default model

    # A named mode below the VM's CPU: the VM is named with what it would lose.
    refused = lab.ferry("cluster", "evc", "enable", name, "--mode", "Penryn")
    assert refused.code == 4
    assert "evc.vm-beyond-mode" in refused.err and "VM evcvm on host2" in refused.err
    assert "aes, popcnt, sse4.2" in refused.err
    assert "EVC is off" in ok(lab.ferry("cluster", "evc", "show", name)).out

    # host3 loses AES-NI: 'auto' is then a baseline without it, which the VM uses...
    hide_cpu_features("host3", ["aes"])
    try:
        refused = lab.ferry("cluster", "evc", "enable", name, "--mode", "auto")
        assert refused.code == 4 and "evc.vm-beyond-mode" in refused.err
        assert "VM evcvm on host2 uses CPU features" in refused.err and "aes" in refused.err
        # ...and a mode that needs it is one host3's own libvirt says it cannot run.
        refused = lab.ferry("cluster", "evc", "enable", name, "--mode", "Westmere")
        assert refused.code == 4
        assert "host host3 cannot run EVC mode Westmere: its CPU lacks aes" in refused.err
        assert "evc.vm-beyond-mode" not in refused.err
    finally:
        restore_cpu("host3")
    assert "EVC is off" in ok(lab.ferry("cluster", "evc", "show", name)).out

    # Identical hosts again: 'auto' is their common migratable CPU, and the VM fits it.
    enabled = ok(lab.ferry("cluster", "evc", "enable", name, "--mode", "auto")).out
    shown = ok(lab.ferry("cluster", "evc", "show", name)).out
    mode = shown.split("EVC mode ", 1)[1].split(" ", 1)[0]
    assert f"EVC mode {mode}" in enabled and "asked as 'auto'" in shown
    # The lab's guests are emulated (TCG): enabling says so for each host, and allows it.
    assert "warning: host host2 runs VMs emulated (TCG)" in enabled
    assert "host2: host CPU" in shown and "host3: host CPU" in shown
    listed = ok(lab.ferry("cluster", "list")).out
    assert any(line.split()[:2] == [name, mode] for line in listed.splitlines())

    assert "running with another CPU until ferry starts them again: evcvm" in shown

    # Started again through ferry, the VM runs with the mode's CPU, and boots.
    ok(lab.ferry("vm", "stop", "evcvm", "--force"))
    started_at = time.monotonic()
    ok(lab.ferry("vm", "start", "evcvm"))
    assert live_cpu_model(lab, "host2", "evcvm") == mode
    assert "another CPU" not in ok(lab.ferry("cluster", "evc", "show", name)).out
    assert lab.collector.wait_for_heartbeat("evcvm", 90, after=started_at)
    # A move inside the cluster passes the EVC row and really happens.
    ok(lab.ferry("migrate", "evcvm", "--host", "host3"))
    assert lab.domains("host3").get("evcvm") == "running" and "evcvm" not in lab.domains("host2")
    assert live_cpu_model(lab, "host3", "evcvm") == mode
    heartbeats_continue(lab, ["evcvm"])
    # A new VM created in the cluster gets the mode from its first start.
    make_vm("evcnew", "--host", "host3", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "heartbeat")
    assert live_cpu_model(lab, "host3", "evcnew") == mode
    assert lab.collector.wait_for_heartbeat("evcnew", 90)


def test_the_seeds_workflow_hosts_move_one_by_one_into_a_new_evc_cluster(
    lab: LabEnv, make_vm: Callable[..., None], cluster: Callable[[str], str]
) -> None:
    """Create a new EVC cluster; per host: maintenance, into the cluster, exit, VMs back."""
    homes = {"wf1": "host1", "wf2": "host1", "wf3": "host2"}
    for vm, host in homes.items():
        make_vm(vm, "--host", host, "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat")
    for vm in homes:
        assert lab.collector.wait_for_heartbeat(vm, 90)
    name = cluster("evcnew")
    shown = ok(lab.ferry("cluster", "evc", "enable", name, "--mode", "Westmere")).out
    assert "EVC mode Westmere" in shown and "no hosts yet" in shown

    # A host with running VMs cannot join: the refusal names them and the way in.
    refused = lab.ferry("cluster", "add-host", name, "host1")
    assert refused.code == 4 and "evc.host-has-vms" in refused.err
    assert "wf1, wf2" in refused.err and "maintenance enter host1" in refused.err

    for host in ("host1", "host2"):
        mine = [vm for vm, home in homes.items() if home == host]
        try:
            ok(lab.ferry("host", "maintenance", "enter", host))
            assert not any(vm in lab.domains(host) for vm in mine)
            ok(lab.ferry("cluster", "add-host", name, host))
        finally:
            ok(lab.ferry("host", "maintenance", "exit", host))
        for vm in mine:
            check = lab.ferry("check", vm, "--host", host)
            assert check.code == 0 and "cpu.evc-mode" in check.out, check.out
            ok(lab.ferry("migrate", vm, "--host", host))
            assert lab.domains(host).get(vm) == "running"
        heartbeats_continue(lab, list(homes))

    assert [line.split()[:2] for line in ok(lab.ferry("cluster", "list")).out.splitlines()
            if line.startswith(name)] == [[name, "Westmere"]]
    shown = ok(lab.ferry("cluster", "evc", "show", name)).out
    assert "host1: host CPU" in shown and "host2: host CPU" in shown
    for vm, host in homes.items():
        assert lab.domains(host).get(vm) == "running"
        assert all(vm not in lab.domains(other) for other in lab.hosts if other != host)

    # host1 is now in a cluster: its evacuation keeps the VMs in it, on host2, never host3.
    try:
        ok(lab.ferry("host", "maintenance", "enter", "host1"))
        assert all(lab.domains("host2").get(vm) == "running" for vm in ("wf1", "wf2"))
        assert not any(vm in lab.domains("host3") for vm in homes)
    finally:
        ok(lab.ferry("host", "maintenance", "exit", "host1"))
    heartbeats_continue(lab, list(homes))
