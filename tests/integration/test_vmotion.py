"""VMotion in the lab: real libvirtd per host, real QEMU guests, checked through virsh."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, heartbeat_back_ms, progress_of, report_of, wait_until

from ferry.cli.client import FerryClient
from ferry.reports import LiveProgress, LiveReport

pytestmark = pytest.mark.lab


def test_live_migration_moves_running_vm_and_heartbeat_continues(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("hb1", "--host", "host1", "--datastore", "shared", "--memory", "512",
           "--disk", "64", "--workload", "heartbeat,mem:64")
    assert lab.collector.wait_for_heartbeat("hb1", 60), "guest hb1 never sent a heartbeat"
    seq_before = lab.collector.last_seq("hb1") or 0

    result = lab.ferry("migrate", "hb1", "--host", "host2")

    assert result.code == 0, result.err
    assert lab.domains("host2").get("hb1") == "running"
    assert "hb1" not in lab.domains("host1")
    assert "Persistent:     yes" in lab.virsh("host2", "dominfo", "hb1").stdout
    # Same guest, not a reboot: its heartbeat sequence carries on past the migration.
    wait_until(lambda: (lab.collector.last_seq("hb1") or 0) > seq_before + 200, 30,
               "heartbeats from hb1 on host2")
    client = FerryClient()
    job = client.get_job(client.list_jobs(limit=1)[0].id)
    assert (job.vm, job.dest_host, job.state) == ("hb1", "host2", "succeeded")
    report = report_of(job, LiveReport)
    gap = report.heartbeat_gap_ms
    assert gap is not None and 0 < gap < 10_000
    assert report.downtime_ms is not None and (report.data_bytes or 0) > 0
    phases = [e.phase for e in job.events]
    assert phases.index("register-destination") < phases.index("switchover") \
        < phases.index("resumed-destination") <= phases.index("done")
    assert "downtime" in result.out.lower() and "heartbeat" in result.out.lower()

    # And onwards to the third host, as the demo does.
    assert lab.ferry("migrate", "hb1", "--host", "host3").code == 0
    assert lab.domains("host3").get("hb1") == "running"
    assert "hb1" not in lab.domains("host2")


# A cancel has frozen the guest left on the source in about one try in five here
# (QEMU under TCG lost its timer interrupt); ten tries in a row make a regression show.
CANCEL_TRIES = 10


def test_cancel_before_switchover_leaves_vm_on_source(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    from ferry.lab.lab import set_link

    make_vm("busy1", "--host", "host1", "--datastore", "shared", "--memory", "1024",
           "--disk", "0", "--workload", "heartbeat,mem:256")
    assert lab.collector.wait_for_heartbeat("busy1", 60)
    local_before = lab.volumes("host2", "local")
    client = FerryClient()
    for attempt in range(1, CANCEL_TRIES + 1):
        set_link("host1", "50mbit")  # 256 MiB of dirty memory now takes most of a minute
        try:
            result = lab.ferry("migrate", "busy1", "--host", "host2", "--no-wait", "--json")
            assert result.code == 0, result.err
            job_id = json.loads(result.out)["id"]
            wait_until(lambda: (progress_of(client.get_job(job_id),  # noqa: B023
                                            LiveProgress).memory_processed or 0) > 2**20,
                       60, "the memory copy to start")
            assert lab.ferry("job", "cancel", job_id).code == 0
            wait_until(lambda: client.get_job(job_id).state in (  # noqa: B023
                "cancelled", "failed", "succeeded"), 60, "the cancel to finish")
        finally:
            set_link("host1", None)
        job = client.get_job(job_id)
        assert job.state == "cancelled", job.error
        assert lab.domains("host1").get("busy1") == "running"
        assert "busy1" not in lab.domains("host2")
        assert lab.volumes("host2", "local") == local_before
        back_ms = heartbeat_back_ms(lab, "busy1", job.finished_at)
        print(f"cancel {attempt}: heartbeat back {back_ms} ms after the job's end; "
              f"guest check: {report_of(job, LiveReport).guest_after_rollback}")
        assert back_ms is not None and back_ms <= 2000, (
            f"try {attempt}: no heartbeat from busy1 within 2 s of the job's end")


# Bridged like Production, so a running VM's live XML shows type='bridge' for it.
TESTNET = "<network><name>{name}</name><forward mode='bridge'/><bridge name='{bridge}'/></network>"


def test_refusals_name_the_object_and_change_nothing(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    make_vm("cold1", "--host", "host1", "--datastore", "shared", "--memory", "128",
           "--disk", "16", "--workload", "none", "--no-start")
    make_vm("local1", "--host", "host1", "--datastore", "local", "--memory", "128",
           "--disk", "16", "--workload", "none", "--no-start")
    make_vm("iso1", "--host", "host3", "--datastore", "shared", "--memory", "128",
           "--disk", "0", "--workload", "none", "--network", "Isolated", "--no-start")
    for host, name, bridge in (("host1", "Testnet", "prod0"), ("host2", "testnet", "prod0")):
        xml = tmp_path / f"{host}.xml"
        xml.write_text(TESTNET.format(name=name, bridge=bridge))
        lab.virsh(host, "net-define", str(xml))
        lab.virsh(host, "net-start", name)
    try:
        make_vm("case1", "--host", "host1", "--datastore", "shared", "--memory", "128",
               "--disk", "0", "--workload", "none", "--network", "Testnet", "--no-start")
        for vm in ("local1", "iso1", "case1"):
            assert lab.ferry("vm", "start", vm).code == 0
        before = lab.snapshot()
        cases = [
            (["cold1", "host2"], 4, ["vm.not-running", "cold1", "shutoff"]),
            (["local1", "host2"], 4, ["storage.not-shared", "local1-disk0", "local@host1"]),
            (["iso1", "host1"], 4, ["network.missing", "network.internal-only", "'Isolated'",
                                    "host1"]),
            (["case1", "host2"], 4, ["network.case-mismatch", "'Testnet'", "'testnet'"]),
            (["local1", "host1"], 2, ["already runs on host1"]),
            (["local1", "host9"], 2, ["no host named host9"]),
            (["ghost", "host2"], 2, ["no VM named ghost"]),
        ]
        for (vm, host), code, words in cases:
            result = lab.ferry("migrate", vm, "--host", host)
            assert result.code == code, (vm, host, result.err)
            for word in words:
                assert word in result.err, (vm, host, word, result.err)
        assert lab.snapshot() == before
        # libvirt itself, bypassing ferry, cannot move the VM whose disk is local:
        # refused as unsafe, and with --unsafe the destination cannot open the disk.
        peer = "qemu+tls://198.18.0.12/system"
        for flags in ((), ("--unsafe",)):
            attempt = lab.virsh("host1", "migrate", "--live", "--p2p", "--persistent",
                                "--undefinesource", *flags, "local1", peer, check=False)
            assert attempt.returncode != 0, flags
        assert lab.domains("host1").get("local1") == "running"
        assert "local1" not in lab.domains("host2")
        refused = {"cold1", "local1", "iso1", "case1", "ghost"}
        assert not [j for j in FerryClient().list_jobs() if j.vm in refused]  # no job created
        # libvirt itself, bypassing ferry, finds no 'Testnet' on host2 either.
        attempt = lab.virsh("host1", "migrate", "--live", "--p2p", "--persistent",
                            "--undefinesource", "--unsafe", "case1", peer, check=False)
        assert attempt.returncode != 0 and "Testnet" in attempt.stderr
        # Made right: host2 spells the network as host1 does; the move goes through.
        lab.virsh("host2", "net-destroy", "testnet")
        lab.virsh("host2", "net-undefine", "testnet")
        fixed = tmp_path / "fixed.xml"
        fixed.write_text(TESTNET.format(name="Testnet", bridge="prod0"))
        lab.virsh("host2", "net-define", str(fixed))
        lab.virsh("host2", "net-start", "Testnet")
        assert lab.ferry("refresh").code == 0
        moved = lab.ferry("migrate", "case1", "--host", "host2")
        assert moved.code == 0, moved.err
        assert lab.domains("host2").get("case1") == "running"
    finally:
        for host, name in (("host1", "Testnet"), ("host2", "testnet"), ("host2", "Testnet")):
            lab.virsh(host, "net-destroy", name, check=False)
            lab.virsh(host, "net-undefine", name, check=False)
