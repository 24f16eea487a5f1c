"""A VM in the middle of a move, and two moves of one VM at once, in the lab.

libvirt lists a moving VM on both hosts: running on its source, and as a
paused incoming copy on its destination. ferry must show and act on the VM,
never on the copy, and start one move per VM. Every outcome is checked through
plain virsh and the guest's heartbeat, not through ferry's own view.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, define, progress_of, report_of, wait_until

from ferry.api.schemas import JobOut
from ferry.cli.client import ApiError, FerryClient
from ferry.reports import LiveProgress, LiveReport

pytestmark = pytest.mark.lab


def _finished(client: FerryClient, job_id: str) -> bool:
    return client.get_job(job_id).state in ("succeeded", "failed", "cancelled")


def test_a_vm_in_the_middle_of_a_move_is_shown_on_its_source_and_not_acted_on(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    from ferry.lab.lab import set_link

    make_vm("mid1", "--host", "host1", "--datastore", "shared", "--memory", "512",
            "--disk", "0", "--workload", "heartbeat,mem:64")
    assert lab.collector.wait_for_heartbeat("mid1", 60), "guest mid1 never sent a heartbeat"
    client = FerryClient()
    set_link("host1", "20mbit")  # the memory copy now takes well over ten seconds
    try:
        result = lab.ferry("migrate", "mid1", "--host", "host3", "--no-wait", "--json")
        assert result.code == 0, result.err
        job_id = json.loads(result.out)["id"]
        # libvirt itself shows the move: the source runs, host3 holds the paused copy.
        wait_until(lambda: lab.domains("host3").get("mid1") == "paused", 60,
                   "the incoming copy on host3")
        wait_until(lambda: (progress_of(client.get_job(job_id), LiveProgress)
                            .memory_processed or 0) > 0, 60, "the memory copy to start")
        assert lab.domains("host1").get("mid1") == "running"
        assert lab.ferry("refresh").code == 0  # both hosts listed, the copy among them

        shown = lab.ferry("vm", "show", "mid1")
        assert shown.code == 0, shown.err
        assert "Host         host1" in shown.out and "State        running" in shown.out
        assert f"moving to host3 (job {job_id}, migrate, running)" in shown.out
        listed = [line for line in lab.ferry("vm", "list").out.splitlines()
                  if line.split()[0] == "mid1"]
        assert len(listed) == 1, listed
        assert listed[0].split()[1] == "host1" and f"moving to host3 (job {job_id}" in listed[0]

        before = {h: lab.domains(h).get("mid1") for h in lab.hosts}
        stop = lab.ferry("vm", "stop", "mid1", "--force")
        assert stop.code == 4, (stop.out, stop.err)
        assert "vm.moving" in stop.err and job_id in stop.err
        again = lab.ferry("migrate", "mid1", "--host", "host2")
        assert again.code == 4, (again.out, again.err)
        assert "vm.moving" in again.err and job_id in again.err and "paused" not in again.err
        check = lab.ferry("check", "mid1", "--host", "host2")
        assert check.code == 4 and job_id in check.err, (check.out, check.err)
        # Nothing changed: the VM runs on host1, the copy waits on host3, host2 has none.
        assert {h: lab.domains(h).get("mid1") for h in lab.hosts} == before
        assert before == {"host1": "running", "host2": None, "host3": "paused"}
        assert not _finished(client, job_id)
    finally:
        set_link("host1", None)
    wait_until(lambda: _finished(client, job_id), 120, "the move to finish")
    job = client.get_job(job_id)
    assert job.state == "succeeded", job.error
    assert lab.domains("host3").get("mid1") == "running"
    assert "mid1" not in lab.domains("host1") and "mid1" not in lab.domains("host2")
    seq = lab.collector.last_seq("mid1") or 0
    wait_until(lambda: (lab.collector.last_seq("mid1") or 0) > seq + 50, 20,
               "heartbeats from mid1 on host3")
    gap = report_of(job, LiveReport).heartbeat_gap_ms
    assert gap is not None and gap < 10_000


def test_two_migrate_requests_at_once_start_one_job(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    from ferry.lab.lab import set_link

    make_vm("twin1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat")
    assert lab.collector.wait_for_heartbeat("twin1", 60), "guest twin1 never sent a heartbeat"
    jobs_before = {j.id for j in FerryClient().list_jobs(limit=10000)}
    barrier = threading.Barrier(2)
    outcomes: dict[str, JobOut | ApiError] = {}

    def request(dest: str) -> None:
        client = FerryClient()  # a client of its own, as two users would have
        barrier.wait()
        try:
            outcomes[dest] = client.migrate("twin1", dest)
        except ApiError as err:
            outcomes[dest] = err

    set_link("host1", "20mbit")  # the first move still runs when the second is judged
    try:
        threads = [threading.Thread(target=request, args=(d,)) for d in ("host2", "host3")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        accepted = [o for o in outcomes.values() if isinstance(o, JobOut)]
        refused = [o for o in outcomes.values() if isinstance(o, ApiError)]
        assert len(accepted) == 1 and len(refused) == 1, outcomes
        job = accepted[0]
        assert refused[0].exit_code == 4 and job.id in str(refused[0]), str(refused[0])
        assert [f.code for f in refused[0].findings] == ["vm.moving"]
        new = [line for line in lab.ferry("jobs", "--all").out.splitlines()
               if line.split()[0] not in jobs_before and " twin1 " in line]
        assert len(new) == 1 and new[0].startswith(job.id), new
    finally:
        set_link("host1", None)
    client = FerryClient()
    wait_until(lambda: _finished(client, job.id), 120, "the move to finish")
    assert client.get_job(job.id).state == "succeeded", client.get_job(job.id).error
    dest = job.dest_host
    assert dest is not None and lab.domains(dest).get("twin1") == "running"
    assert [h for h in lab.hosts if "twin1" in lab.domains(h)] == [dest]


def test_a_name_two_vms_share_asks_for_the_uuid_and_the_uuid_acts_on_that_vm_only(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    make_vm("dup1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "none")
    # An admin's own VM of the same name on host2, defined outside ferry (another UUID).
    other = ("<domain type='qemu'><name>dup1</name><memory unit='MiB'>64</memory>"
             "<os><type arch='x86_64'>hvm</type></os></domain>")
    define(lab, "host2", other, tmp_path, start=False)
    try:
        mine = lab.virsh("host1", "domuuid", "dup1").stdout.strip()
        theirs = lab.virsh("host2", "domuuid", "dup1").stdout.strip()
        assert mine and theirs and mine != theirs
        for argv in (("vm", "show", "dup1"), ("vm", "stop", "dup1", "--force"),
                     ("migrate", "dup1", "--host", "host3")):
            result = lab.ferry(*argv)
            assert result.code == 2, (argv, result.out, result.err)
            assert f"on host1 with UUID {mine}" in result.err, result.err
            assert f"on host2 with UUID {theirs}" in result.err and "UUID" in result.err
        assert lab.domains("host1")["dup1"] == "running"
        listed = [line for line in lab.ferry("vm", "list").out.splitlines()
                  if line.split()[0] == "dup1"]
        assert sorted(line.split()[2] for line in listed) == sorted([mine, theirs])

        assert lab.ferry("vm", "show", theirs).out.count("host2") >= 1
        stopped = lab.ferry("vm", "stop", mine, "--force")
        assert stopped.code == 0, stopped.err
        assert lab.domains("host1")["dup1"] == "shut off"
        assert lab.domains("host2")["dup1"] == "shut off"  # never started, still defined
    finally:
        lab.virsh("host2", "undefine", "dup1", check=False)
        lab.ferry("refresh")
