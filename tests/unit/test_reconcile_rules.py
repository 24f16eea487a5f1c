"""The rules a server applies to a job it took over, over what the hosts showed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ferry.engine.reconcile import (
    Act,
    Decision,
    Outcome,
    Seen,
    judge_cold,
    judge_live,
    judge_storage,
)
from ferry.model import VM, Disk, MigrationSide, PostcopyState, VMState

UUID = "0d7e6f4e-0000-4000-8000-000000000001"


def vm(host: str, state: VMState = VMState.RUNNING, side: MigrationSide | None = None,
       disks: tuple[str, ...] = ()) -> VM:
    return VM(name="web1", uuid=UUID, host=host, state=state, memory_kib=2**20, vcpus=1,
              persistent=side is not MigrationSide.INCOMING, migration=side,
              disks=tuple(Disk(f"vd{chr(97 + i)}", "disk", "file", path, "qcow2")
                          for i, path in enumerate(disks)))


def on(host: str, found: VM | None) -> Seen:
    return Seen(host, True, found)


SILENT = Seen("host2", False, error="connection refused")


@pytest.mark.parametrize(("src", "dst", "expected"), [
    # libvirt still migrates: follow it, whatever the destination shows
    (vm("host1", side=MigrationSide.OUTGOING), vm("host2", VMState.PAUSED,
                                                   MigrationSide.INCOMING),
     Decision(Outcome.FOLLOW)),
    # completed while ferry was down
    (None, vm("host2"), Decision(Outcome.SUCCEEDED)),
    (vm("host1", VMState.SHUTOFF), vm("host2"), Decision(Outcome.SUCCEEDED)),
    # the source's paused leftover of a completed switchover goes
    (vm("host1", VMState.PAUSED), vm("host2"),
     Decision(Outcome.SUCCEEDED, (Act.DESTROY_SOURCE,))),
    # the VM only on the destination, left paused: resumed there
    (None, vm("host2", VMState.PAUSED), Decision(Outcome.SUCCEEDED, (Act.RESUME_DEST,))),
    # failed: the VM runs on the source, the destination has nothing
    (vm("host1"), None, Decision(Outcome.FAILED)),
    # failed, with the destination's incoming copy left behind
    (vm("host1"), vm("host2", VMState.PAUSED, MigrationSide.INCOMING),
     Decision(Outcome.FAILED, (Act.DESTROY_DEST,))),
    # both paused: the source holds the VM (the other is an incoming copy)
    (vm("host1", VMState.PAUSED), vm("host2", VMState.PAUSED, MigrationSide.INCOMING),
     Decision(Outcome.FAILED, (Act.DESTROY_DEST, Act.RESUME_SOURCE))),
    (vm("host1", VMState.PAUSED), None, Decision(Outcome.FAILED, (Act.RESUME_SOURCE,))),
    # nothing a rule may decide: never guessed
    (vm("host1"), vm("host2"), Decision(Outcome.UNRESOLVED)),
    (None, None, Decision(Outcome.UNRESOLVED)),
])
def test_live_rules(src: VM | None, dst: VM | None, expected: Decision) -> None:
    decision = judge_live(on("host1", src), on("host2", dst))
    assert decision == expected
    running_after = {"host1": src is not None and src.state is VMState.RUNNING
                     and src.migration is None,
                     "host2": dst is not None and dst.migration is None
                     and dst.state in (VMState.RUNNING, VMState.PAUSED)}
    if decision.outcome is Outcome.SUCCEEDED:
        assert running_after["host2"] and Act.RESUME_SOURCE not in decision.acts
    if decision.outcome is Outcome.FAILED:
        assert Act.DESTROY_SOURCE not in decision.acts and Act.RESUME_DEST not in decision.acts


def postcopy(found: VM, state: PostcopyState) -> VM:
    return replace(found, postcopy=state)


def test_a_vm_in_postcopy_is_followed_and_one_whose_postcopy_failed_is_never_touched() -> None:
    # In post-copy the destination runs the VM and the source holds the pages it lacks:
    # the "paused leftover" rule would destroy them.
    active = judge_live(on("host1", postcopy(vm("host1", VMState.PAUSED), PostcopyState.ACTIVE)),
                        on("host2", postcopy(vm("host2"), PostcopyState.ACTIVE)))
    assert active == Decision(Outcome.FOLLOW)
    failed = judge_live(on("host1", postcopy(vm("host1", VMState.PAUSED), PostcopyState.FAILED)),
                        on("host2", postcopy(vm("host2"), PostcopyState.FAILED)))
    assert failed == Decision(Outcome.UNRESOLVED)


def test_a_host_that_does_not_answer_is_waited_for_never_guessed_about() -> None:
    assert judge_live(on("host1", vm("host1")), SILENT).outcome is Outcome.WAIT
    assert judge_live(SILENT, on("host2", vm("host2"))).outcome is Outcome.WAIT
    assert judge_cold(on("host1", None), SILENT, {"/t"}).outcome is Outcome.WAIT
    assert judge_storage(SILENT, False, False, {"/t"}).outcome is Outcome.WAIT


def test_storage_rules() -> None:
    targets = {"/srv/local/web1-vda.qcow2"}
    on_new = on("host1", vm("host1", disks=("/srv/local/web1-vda.qcow2",)))
    on_old = on("host1", vm("host1", disks=("/srv/shared/web1.qcow2",)))
    # the mirror still copies: followed; caught up: the VM is switched to the copies
    assert judge_storage(on_old, True, False, targets).outcome is Outcome.FOLLOW
    assert judge_storage(on_old, True, True, targets).outcome is Outcome.FINISH_COPY
    assert judge_storage(on_new, False, False, targets) == Decision(Outcome.SUCCEEDED,
                                                                   (Act.REPOINT,))
    assert judge_storage(on_old, False, False, targets).outcome is Outcome.FAILED
    assert judge_storage(on("host1", None), False, False, targets).outcome is \
        Outcome.UNRESOLVED


def test_cold_rules() -> None:
    off = VMState.SHUTOFF
    assert judge_cold(on("host1", None), on("host2", vm("host2", off)),
                      set()).outcome is Outcome.SUCCEEDED
    assert judge_cold(on("host1", vm("host1", off)), on("host2", None),
                      set()).outcome is Outcome.FAILED
    # defined on both: the destination's definition is ferry's and goes with the rest
    assert judge_cold(on("host1", vm("host1", off)), on("host2", vm("host2", off)),
                      set()).outcome is Outcome.FAILED
    same = on("host1", vm("host1", off, disks=("/srv/local/web1-vda.img",)))
    assert judge_cold(same, same, {"/srv/local/web1-vda.img"}).outcome is Outcome.SUCCEEDED
    assert judge_cold(same, same, {"/srv/other/web1-vda.img"}).outcome is Outcome.FAILED
