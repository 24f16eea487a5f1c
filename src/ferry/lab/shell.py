"""Run the lab's system commands (ip, tc, virsh, nsenter) with readable failures.

The lab is built from many small commands; when one fails, the person running
``ferry lab up`` needs the command line and its stderr, not a bare exit code.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

from ferry.errors import LabError

DEFAULT_TIMEOUT = 120.0


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input_text: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; with ``check`` a non-zero exit becomes a :class:`LabError`."""
    cmd = list(argv)
    try:
        result = subprocess.run(
            cmd,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # Never hand the lab's commands our terminal: virsh would prompt.
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {cmd[0]} (is it installed?)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout:.0f}s: {shlex.join(cmd)}") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"command failed (exit {result.returncode}): {shlex.join(cmd)}: {detail}")
    return result


def ok(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True if ``argv`` exits 0; for teardown steps whose failure is expected."""
    try:
        return run(argv, check=False, timeout=timeout).returncode == 0
    except LabError:
        return False
