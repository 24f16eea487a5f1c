"""A block copy's pivot waits while libvirt has not yet handled QEMU's READY event (it
refuses with VIR_ERR_BLOCK_COPY_ACTIVE, "not ready for pivot yet"), and only then."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from ferry.errors import VirtError
from ferry.virt import libvirt_blockcopy
from ferry.virt.libvirt_blockcopy import BlockCopyCalls


def refusal(code: int, message: str) -> libvirt.libvirtError:
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 2, "", "", "", 0, 0)  # as libvirt's last error reads
    return err


class Domain:
    def __init__(self, refusals: list[libvirt.libvirtError]) -> None:
        self.refusals = refusals
        self.pivots = 0

    def blockJobAbort(self, disk: str, flags: int) -> None:  # libvirt's name
        assert flags == libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT
        if self.refusals:
            raise self.refusals.pop(0)
        self.pivots += 1


class Host(BlockCopyCalls):
    def __init__(self, dom: Domain) -> None:
        self.name = "host1"
        self._conn: Any = type("Conn", (), {"lookupByName": lambda _self, _name: dom})()


NOT_READY = "block copy still active: block job 'copy-vda' not ready for pivot yet"


def test_the_pivot_is_asked_again_until_libvirt_knows_the_mirror_is_ready() -> None:
    dom = Domain([refusal(libvirt.VIR_ERR_BLOCK_COPY_ACTIVE, NOT_READY)] * 3)
    Host(dom).pivot_block_copy("web1", "vda")
    assert dom.pivots == 1 and dom.refusals == []


def test_another_error_is_not_waited_on() -> None:
    dom = Domain([refusal(libvirt.VIR_ERR_OPERATION_INVALID, "domain is not running")])
    with pytest.raises(VirtError, match="host host1: switch web1 to the copy of vda"):
        Host(dom).pivot_block_copy("web1", "vda")
    assert dom.pivots == 0


def test_a_mirror_never_ready_fails_after_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libvirt_blockcopy, "PIVOT_READY_WAIT_S", 0.2)
    dom = Domain([refusal(libvirt.VIR_ERR_BLOCK_COPY_ACTIVE, NOT_READY)] * 1000)
    with pytest.raises(VirtError, match="not ready for pivot yet"):
        Host(dom).pivot_block_copy("web1", "vda")
    assert dom.pivots == 0
