"""What every benchmark here needs: its own ferry server on the lab, a job awaited."""

from __future__ import annotations

import os
import socket
import statistics
import time
from typing import Any

from ferry import config
from ferry.cli.client import ApiError, FerryClient
from ferry.lab.lab import LabState, lab_up
from ferry.server import Server, build_server

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


def ferry_on_lab(hosts: int = 3) -> tuple[LabState, Server, FerryClient]:
    """The lab (brought up if it is not), a ferry server of this process on a free port,
    and a client of it with every lab host registered."""
    lab = lab_up(hosts=hosts)
    port = free_port()
    os.environ["FERRY_URL"] = f"http://127.0.0.1:{port}"
    server = build_server(config.ServerSettings("127.0.0.1", port, config.database_url()))
    server.start_in_background()
    client = FerryClient()
    known = {h.name for h in client.list_hosts()}
    for host in lab.hosts:
        if host.name not in known:
            client.add_host(host.name, host.uri)
    return lab, server, client


def fresh_busy_vm(client: FerryClient, collector: Any, name: str, memory_mib: int,
                  workload_mib: int) -> None:
    """VM ``name`` made anew on host1's shared datastore, its heartbeat coming and its
    memory writer (``workload_mib``) under way."""
    try:
        client.get_vm(name)
        client.delete_vm(name)
    except ApiError:
        pass
    client.create_vm(name=name, host="host1", datastore="shared", memory_mib=memory_mib,
                     vcpus=1, disk_mib=0, heartbeat=True, memory_workload_mib=workload_mib)
    if not collector.wait_for_heartbeat(name, 60):
        raise SystemExit(f"the benchmark VM {name} sent no heartbeat")
    time.sleep(5)  # let the memory writer fill its buffer before the first round


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    """The median of ``key`` over ``rows`` that have it; None when none does."""
    values = [float(r[key]) for r in rows if r[key] is not None]
    return statistics.median(values) if values else None
