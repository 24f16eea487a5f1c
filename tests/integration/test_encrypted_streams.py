"""Encrypted migration streams in the lab, judged on the wire.

The migration link of the source host is captured (tcpdump inside the host's network
namespace) while a VM moves. The guest's memory holds a marker: its name, which the
lab guest carries on its kernel command line, so copies of it sit in guest RAM. A
shared-nothing move also carries a marker written on the VM's disk. With ferry's
default the markers never cross in clear; with clear text allowed for a host that
cannot do TLS they do, which shows the capture would have seen them.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import LabEnv, disk_source, report_of
from wire import captured

from ferry.cli.client import FerryClient
from ferry.lab.lab import local_datastore_dir
from ferry.lab.layout import LabHostLayout
from ferry.reports import LiveReport
from ferry.virt.libvirt_host import open_host

pytestmark = pytest.mark.lab

CAPTURED_AT_LEAST = 4 * 2**20  # a move of a running guest sends more than this


@pytest.fixture
def host3_without_qemu_certificates(lab: LabEnv) -> Iterator[str]:
    """host3 as an admin left it before setting up QEMU's migration TLS."""
    folder = LabHostLayout(3).root_dir / "etc-pki" / "qemu"
    aside = folder.with_name("qemu.aside")
    folder.rename(aside)
    folder.mkdir()
    assert lab.ferry("refresh", "--host", "host3").code == 0  # as an admin would
    try:
        yield "host3"
    finally:
        lab.ferry("host", "set", "host3", "--allow-cleartext-migration", "off")
        shutil.rmtree(folder)
        aside.rename(folder)
        lab.ferry("refresh", "--host", "host3")


def test_many_readers_of_a_hosts_tls_set_up_at_once_all_read_it_whole(lab: LabEnv) -> None:
    """Each read puts a short-lived pool on a folder, and libvirt allows one pool per
    folder: readers at once (checks of several servers, an inventory refresh) wait their
    turn instead of reading a folder they could not open as empty."""
    conns = [open_host("host1", lab.uris["host1"]) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(conns) + 1) as pool:
            refreshed = pool.submit(lambda: [FerryClient().refresh("host1") for _ in range(5)])
            seen = list(pool.map(lambda conn: [conn.migration_tls() for _ in range(5)], conns))
            refreshed.result()
    finally:
        for conn in conns:
            conn.close()
    wanted = {"ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem",
              "client-key.pem"}
    for reads in seen:
        for tls in reads:
            assert (tls.cert_dir, tls.verify_clients) == ("/etc/pki/qemu", True)
            assert wanted <= tls.files, tls.files
    assert not [p for p in lab.virsh("host1", "pool-list", "--all", "--name").stdout.split()
                if p.startswith("ferry-probe-")]


def _last_job_report() -> LiveReport:
    client = FerryClient()
    job = client.get_job(client.list_jobs(limit=1)[0].id)
    assert job.state == "succeeded", job.error
    return report_of(job, LiveReport)


def test_memory_crosses_encrypted_and_clear_text_only_where_allowed(
    lab: LabEnv, make_vm: Callable[..., None], host3_without_qemu_certificates: str,
    tmp_path: Path,
) -> None:
    name = f"mark{secrets.token_hex(10)}"
    marker = name.encode()
    make_vm(name, "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat,mem:32")
    assert lab.collector.wait_for_heartbeat(name, 60)

    with captured(1, tmp_path) as wire:
        moved = lab.ferry("migrate", name, "--host", "host2")
    assert moved.code == 0, moved.err
    assert lab.domains("host2").get(name) == "running" and name not in lab.domains("host1")
    assert wire.total_bytes > CAPTURED_AT_LEAST, wire.total_bytes
    assert not wire.holds(marker), "the guest's memory crossed in clear text"
    assert _last_job_report().encrypted is True
    assert "encrypted (TLS)" in lab.ferry("job", "show", FerryClient().list_jobs(
        limit=1)[0].id).out

    # host3 has no QEMU certificates: refused, naming the host and the setting.
    before = lab.snapshot()
    refused = lab.ferry("migrate", name, "--host", "host3")
    assert refused.code == 4, refused.err
    assert "host host3 cannot receive an encrypted migration" in refused.err
    assert "migrate_tls_x509_cert_dir" in refused.err
    assert "--allow-cleartext-migration on" in refused.err
    assert lab.snapshot() == before

    assert lab.ferry("host", "set", "host3", "--allow-cleartext-migration", "on").code == 0
    with captured(2, tmp_path) as wire:
        moved = lab.ferry("migrate", name, "--host", "host3")
    assert moved.code == 0, moved.err
    assert lab.domains("host3").get(name) == "running" and name not in lab.domains("host2")
    assert wire.holds(marker), "clear text was allowed, yet the capture missed the marker"
    report = _last_job_report()
    assert report.encrypted is False
    assert "migration.cleartext" in [w.code for w in report.warnings]
    assert report.heartbeat_lost == 0


def test_disks_of_a_shared_nothing_move_cross_encrypted(
    lab: LabEnv, make_vm: Callable[..., None], host3_without_qemu_certificates: str,
    tmp_path: Path,
) -> None:
    name = f"disk{secrets.token_hex(6)}"
    marker = f"FERRY-DISK-MARKER-{secrets.token_hex(12)}".encode()
    make_vm(name, "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "16", "--disk-format", "raw", "--no-start")
    source = disk_source(lab.virsh("host1", "dumpxml", name).stdout)
    assert source is not None
    disk = local_datastore_dir("host1") / Path(source).name
    with disk.open("r+b") as handle:  # the guest never reads it: the marker stays as written
        for offset_mib in (1, 5, 9):
            handle.seek(offset_mib * 2**20)
            handle.write(marker * 64)
    assert lab.ferry("vm", "start", name).code == 0

    with captured(1, tmp_path) as wire:
        moved = lab.ferry("migrate", name, "--host", "host2", "--datastore", "local")
    assert moved.code == 0, moved.err
    assert lab.domains("host2").get(name) == "running" and name not in lab.domains("host1")
    assert wire.total_bytes > CAPTURED_AT_LEAST, wire.total_bytes
    assert not wire.holds(marker), "the disk crossed in clear text"
    assert not wire.holds(name.encode()), "the memory crossed in clear text"
    assert _last_job_report().encrypted is True

    assert lab.ferry("host", "set", "host3", "--allow-cleartext-migration", "on").code == 0
    with captured(2, tmp_path) as wire:
        moved = lab.ferry("migrate", name, "--host", "host3", "--datastore", "local")
    assert moved.code == 0, moved.err
    assert wire.holds(marker), "clear text was allowed, yet the capture missed the disk marker"
    assert _last_job_report().encrypted is False
