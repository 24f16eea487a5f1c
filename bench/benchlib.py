"""What every benchmark here needs: a free local port for its own server, a job awaited."""

from __future__ import annotations

import socket
import time
from typing import Any

FINISHED = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_job(client: Any, job_id: str, poll_s: float = 0.1) -> Any:
    """The job once it has finished (polled through the API every ``poll_s``)."""
    while True:
        job = client.get_job(job_id)
        if job.state.value in FINISHED:
            return job
        time.sleep(poll_s)
