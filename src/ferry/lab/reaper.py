"""Run a lab host's libvirtd under a process that reaps its orphans at once.

libvirtd daemonises QEMU, so a guest's QEMU is reparented away from it; when
QEMU exits, libvirtd waits until the process is gone before it reports the
guest stopped. On a real host init reaps at once. The machine the lab runs on
may have an init that reaps slowly, and then every guest stop (and the end of
every migration, on its source) took a second or two longer than on a real
host. As a child subreaper (``PR_SET_CHILD_SUBREAPER``), this process adopts
the orphans of its descendants and reaps them as soon as they exit.

Usage: ``python -m ferry.lab.reaper COMMAND [ARG...]``. It exits when it has no
child left, with the command's own exit status.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m ferry.lab.reaper COMMAND [ARG...]", file=sys.stderr)
        return 2
    become_subreaper()
    command = os.fork()
    if command == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)  # exec failed; the reason is on stderr
    status = 0
    while True:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            return status
        if pid == command:
            status = os.waitstatus_to_exitcode(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
