"""ferry's live Storage VMotion next to ``qemu-img convert`` of the same disk.

One run, one VM on host1, one thin (qcow2) data disk of --size-gib virtual
size holding --data-gib of real, non-zero data; every copy goes from the
shared datastore to host1's local datastore:

    .venv/bin/python bench/svmotion_vs_qemu_img.py [--size-gib 4] [--data-gib 1]
        [--rounds 1] [--no-warm] [--json out.json]

Per round:

1. ``ferry vm create`` (through the API) makes the VM on datastore ``shared``
   with a --size-gib qcow2 data disk, powered off. ferry has no option to fill
   a disk, so the data is written into the volume while the VM is off, with
   ``qemu-io -c 'write -P 0x5a OFF LEN'`` in host1's mount namespace: 16
   pieces per GiB of data, each 1/16 GiB, spread evenly over the virtual size
   (a constant non-zero byte: nothing a copy can skip as zeros; no tool here
   compresses). Then the VM is started and its heartbeat awaited. The guest
   has no disk workload, so the disk does not change during the copies.
2. Baselines, in host1's namespaces, from the same source file to
   /var/lib/ferry-local, each timed on its own:
   a. ``qemu-img convert -U -f qcow2 -O qcow2 SRC DST`` (qemu-img's defaults,
      as an admin types it), then ``sync DST``: those defaults go through the
      page cache and write the target with cache=unsafe (no flush), while the
      mirror flushes its target before it reports ready, so the headline time
      includes the ``sync`` (printed apart too). Copy deleted right after.
   b. ``qemu-img convert -U -t none -T none -f qcow2 -O qcow2 SRC DST``:
      O_DIRECT for reading and writing. This is the like-for-like baseline:
      ferry's lab VMs have ``cache='none' io='native'`` disks, so the mirror
      also reads the source and writes the target with O_DIRECT (the bench
      checks the target's open flags in the QEMU process after the move). The
      copy is kept until the ferry copy has been compared with it
      (``qemu-img compare``: same guest-visible content), then deleted.
   ``-U`` (force-share) is there only because the running QEMU holds the
   image lock; the source is not written meanwhile. No ``-W``: not a default.
3. ``FerryClient().migrate(VM, None, "local", "thin")``, timed from the API call
   to the job's success (polled every 0.1 s); the job's own ``total_ms`` is
   reported as well. That includes creating the target, mirroring, pivot,
   repointing the definition and deleting the source. A thread also polls
   libvirt's block job every 20 ms on its own connection, to show when QEMU's
   mirror was ready apart from how often ferry's engine looks (it can miss
   that moment when ferry pivots between two of its polls; "seen n/N").
   Afterwards (not timed) a ``sync`` of the target shows whether anything was
   left unflushed.

``sync`` runs before each timed step so no step pays for another's dirty
pages. This machine is itself a virtual machine whose memory is backed lazily by its
host, and pages freed for more than a few seconds go back to the host
(virtio-balloon free page reporting): putting 1 GiB into page cache costs
about 2 s of system time on such pages, 0.2 s on pages freed a moment ago
(``dd`` of 1 GiB, measured while writing this). Only baseline (a) uses the
page cache, so before it the bench writes and deletes a scratch file of data
+ 256 MiB on the target datastore (untimed, ``bsv-warm.tmp``): (a) then sees
a host that recycles its page cache, as a busy one does. ``--no-warm`` skips
that.

Throughput is the data written by qemu-io (not the virtual size) divided by
the time. A target's allocation is ``st_blocks * 512`` of the file as
``stat`` shows it inside host1; ``qemu-img map`` gives how many of its bytes
are data clusters (not zero-flagged), which shows whether zeros were written.

It runs its own ferry server (FERRY_HOME in a temporary folder, host1 only
registered) against the lab, which must already be up (``ferry lab up``); it
never brings the lab up or down. Everything it creates is named ``bsv-*`` and
deleted at the end, also on failure. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import free_port, wait_job

from ferry.reports import DiskReport, StorageReport

HOST = "host1"
VM = "bsv-sv"
SOURCE_POOL = "shared"
TARGET_POOL = "local"
DEFAULT_COPY = "bsv-qemu-img-default.qcow2"
DIRECT_COPY = "bsv-qemu-img-direct.qcow2"
WARM_FILE = "bsv-warm.tmp"
OUR_FILES = (DEFAULT_COPY, DIRECT_COPY, WARM_FILE)
PATTERN = "0x5a"
PIECES_PER_GIB = 16
GIB = 2**30
MIB = 2**20
O_DIRECT = 0o40000  # x86-64



def in_host(*argv: str, check: bool = True) -> Any:
    from ferry.lab.lab import host_exec

    return host_exec(HOST, list(argv), check=check)


def allocated(path: str) -> int:
    """Bytes the file really occupies on disk, as host1 sees it (st_blocks * 512)."""
    blocks, unit = in_host("stat", "-c", "%b %B", path).stdout.split()
    return int(blocks) * int(unit)


def mapped_data(path: str) -> int:
    """Bytes qemu-img map reports as data (not zero) in the image."""
    out = in_host("qemu-img", "map", "-U", "--output=json", "-f", "qcow2", path).stdout
    return sum(int(e["length"]) for e in json.loads(out) if e.get("data") and not e.get("zero"))


def fill(path: str, size: int, data: int) -> str:
    """Write ``data`` bytes of PATTERN into the image in pieces spread over ``size``."""
    pieces = max(1, round(data / GIB * PIECES_PER_GIB))
    length, stride = data // pieces, size // pieces
    commands = []
    for i in range(pieces):
        commands += ["-c", f"write -P {PATTERN} {i * stride} {length}"]
    in_host("qemu-io", "-f", "qcow2", *commands, path)
    return f"{pieces} x {length // MIB} MiB every {stride // MIB} MiB"


def warm(local_dir: str, size: int) -> None:
    """Write and delete ``size`` bytes of page cache (untimed); see the module docstring."""
    path = f"{local_dir}/{WARM_FILE}"
    in_host("dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size // MIB}", "status=none")
    in_host("rm", "-f", path)


def sync(path: str) -> float:
    started = time.monotonic()
    in_host("sync", path)
    return time.monotonic() - started


def convert(source: str, target: str, *flags: str) -> float:
    started = time.monotonic()
    in_host("qemu-img", "convert", "-U", *flags, "-f", "qcow2", "-O", "qcow2", source, target)
    return time.monotonic() - started


def opened_direct(path: str) -> bool | None:
    """Whether the VM's QEMU process has ``path`` open with O_DIRECT (None: not open)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if f"guest={VM},".encode() not in cmdline:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    flags = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1]
                    return bool(int(flags.split()[0], 8) & O_DIRECT)
        except (OSError, IndexError, ValueError):
            continue
    return None


class MirrorWatch(threading.Thread):
    """Polls libvirt's block job on vda every 20 ms over its own connection: when QEMU's
    mirror is ready (libvirt shows cur == end only once QEMU says ready), independent of
    how often ferry's engine looks."""

    def __init__(self, uri: str) -> None:
        import libvirt

        super().__init__(daemon=True)
        libvirt.registerErrorHandler(lambda *_: None, None)
        self.conn = libvirt.open(uri)  # before the clock starts: TLS set-up is not timed
        self.started = time.monotonic()
        self.ready: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import libvirt

        try:
            dom = self.conn.lookupByName(VM)
            while not self.stop.is_set() and self.ready is None:
                try:
                    info = dom.blockJobInfo("vda", 0)
                except libvirt.libvirtError:
                    info = None
                if info and info["end"] > 0 and info["cur"] >= info["end"]:
                    self.ready = time.monotonic() - self.started
                time.sleep(0.02)
        finally:
            self.conn.close()



def remove_vm(client: Any) -> None:
    from ferry.cli.client import ApiError

    with contextlib.suppress(ApiError):
        client.refresh(HOST)
    try:
        client.get_vm(VM)
    except ApiError:
        return
    client.delete_vm(VM)


def one_round(client: Any, collector: Any, size: int, data: int, local_dir: str,
              warm_bytes: int, uri: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    client.create_vm(name=VM, host=HOST, datastore=SOURCE_POOL, memory_mib=256, vcpus=1,
                     disk_mib=size // MIB, disk_format="qcow2", heartbeat=True, start=False)
    vm = client.get_vm(VM)
    source = next(d.source for d in vm.disks if d.target == "vda")
    row["source"] = source
    row["source_alloc_created"] = allocated(source)
    row["fill"] = fill(source, size, data)
    row["source_alloc_filled"] = allocated(source)
    row["source_data_mapped"] = mapped_data(source)
    client.power(VM, "on")
    row["heartbeat"] = collector.wait_for_heartbeat(VM, 180) if collector else None
    time.sleep(5)  # let the guest settle after boot (TCG)
    row["source_direct"] = opened_direct(source)

    # Baseline (a): qemu-img's defaults through the page cache, then made durable.
    default_copy = f"{local_dir}/{DEFAULT_COPY}"
    if warm_bytes:
        warm(local_dir, warm_bytes)
    sync(source)
    row["default_convert_s"] = convert(source, default_copy)
    row["default_sync_s"] = sync(default_copy)
    row["default_s"] = row["default_convert_s"] + row["default_sync_s"]
    row["default_alloc"] = allocated(default_copy)
    row["default_data_mapped"] = mapped_data(default_copy)
    in_host("rm", "-f", default_copy)

    # Baseline (b): O_DIRECT both sides, the cache mode of the VM's disk and of the mirror.
    direct_copy = f"{local_dir}/{DIRECT_COPY}"
    in_host("sync", "-f", local_dir)
    row["direct_s"] = convert(source, direct_copy, "-t", "none", "-T", "none")
    row["direct_sync_after_s"] = sync(direct_copy)  # not counted; ~0 with O_DIRECT
    row["direct_alloc"] = allocated(direct_copy)
    row["direct_data_mapped"] = mapped_data(direct_copy)

    # ferry: live storage migration of the running VM's disk.
    in_host("sync", "-f", local_dir)
    watch = MirrorWatch(uri)
    started, started_wall = time.monotonic(), time.time()
    watch.started = started
    watch.start()
    job = wait_job(client, client.migrate(VM, None, TARGET_POOL, "thin").id)
    row["ferry_s"] = time.monotonic() - started
    watch.stop.set()
    watch.join(10)
    row["mirror_ready_s"] = watch.ready
    row["ferry_ok"] = job.state.value == "succeeded"
    row["ferry_error"] = job.error
    report = job.report if isinstance(job.report, StorageReport) else StorageReport()
    row["ferry_job_total_ms"] = report.total_ms
    # When each step of the job was logged, in seconds after the API call.
    row["ferry_events"] = [[e.phase, round(e.at - started_wall, 3)] for e in job.events]
    # The copy's own end: the VM runs on the new file (what follows is deleting the source).
    row["ferry_switched_s"] = next(
        (e.at - started_wall for e in job.events if e.phase == "resumed-destination"), None)
    disk = report.disks.get("vda") or DiskReport()
    row["ferry_mode"] = disk.mode
    row["ferry_copied"] = disk.copied
    row["ferry_report_alloc"] = disk.target_allocation
    row["ferry_target"] = disk.target
    if not row["ferry_ok"]:
        raise SystemExit(f"ferry's storage migration failed: {job.error}")
    target = disk.target
    row["ferry_target_direct"] = opened_direct(target)
    row["ferry_alloc"] = allocated(target)
    row["ferry_data_mapped"] = mapped_data(target)
    row["ferry_target_size"] = int(in_host("stat", "-c", "%s", target).stdout)
    row["ferry_sync_after_s"] = sync(target)  # not counted; ~0 if the mirror flushed
    row["identical_to_qemu_img_copy"] = in_host(
        "qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", direct_copy, target,
        check=False).returncode == 0
    in_host("rm", "-f", direct_copy)
    remove_vm(client)
    return row


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-warm", action="store_true",
                        help="skip the untimed page-cache warm-up before baseline (a)")
    parser.add_argument("--json")
    args = parser.parse_args()
    size, data = int(args.size_gib * GIB), int(args.data_gib * GIB)
    warm_bytes = 0 if args.no_warm else data + 256 * MIB
    if not 0 < data <= size:
        parser.error("--data-gib must be above 0 and at most --size-gib")
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab's namespaces)")

    home = Path(tempfile.mkdtemp(prefix="bsv-ferry-home-"))
    port = free_port()
    os.environ["FERRY_HOME"] = str(home)
    os.environ["FERRY_URL"] = f"http://127.0.0.1:{port}"
    os.environ.pop("FERRY_TOKEN", None)
    from ferry import config
    from ferry.cli.client import ApiError, FerryClient
    from ferry.lab import layout, tls
    from ferry.lab.lab import client_uri, lab_status
    from ferry.server import build_server

    # A client certificate of the lab's CA in this FERRY_HOME only; the lab's state is untouched.
    if (layout.PKI_DIR / tls.CA_CERT_FILE).exists():
        tls.install_client_pki(tls.load_ca(layout.PKI_DIR), config.pki_dir())
    lab = lab_status()
    if lab is None or not any(h.name == HOST and h.healthy for h in lab.hosts):
        shutil.rmtree(home, ignore_errors=True)
        raise SystemExit(f"the lab's {HOST} is not up (ferry lab status); not touching the lab")
    local_dir = str(layout.LOCAL_DATASTORE_MOUNTPOINT)
    ours = [f"{local_dir}/{name}" for name in OUR_FILES]
    load_before = os.getloadavg()
    server = build_server(config.ServerSettings("127.0.0.1", port, config.database_url()))
    server.start_in_background()
    client = FerryClient()
    uri = client_uri(lab.host(HOST).uri)
    rows: list[dict[str, Any]] = []
    try:
        client.add_host(HOST, lab.host(HOST).uri)
        remove_vm(client)  # left by an interrupted earlier run
        in_host("rm", "-f", *ours)
        for n in range(args.rounds):
            row = {"round": n + 1, **one_round(client, server.collector, size, data, local_dir,
                                                   warm_bytes, uri)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        with contextlib.suppress(Exception):
            in_host("rm", "-f", *ours)
        try:
            remove_vm(client)
        except ApiError as err:
            print(f"cleanup: could not delete {VM}: {err.message}", file=sys.stderr)
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    load_after = os.getloadavg()

    def med(key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)

    direct_s, default_s, ferry_s = med("direct_s"), med("default_s"), med("ferry_s")
    job_s = med("ferry_job_total_ms") / 1000
    switched_s = med("ferry_switched_s")
    ready = [float(r["mirror_ready_s"]) for r in rows if r["mirror_ready_s"] is not None]
    ready_s = statistics.median(ready) if ready else None
    summary = {
        "size_bytes": size, "data_bytes": data, "rounds": len(rows), "warm_bytes": warm_bytes,
        "qemu_img_direct_s": direct_s, "qemu_img_default_s": default_s,
        "qemu_img_default_convert_only_s": med("default_convert_s"),
        "ferry_s": ferry_s, "ferry_job_total_s": job_s, "mirror_ready_s": ready_s,
        "qemu_img_direct_mib_s": data / MIB / direct_s,
        "qemu_img_default_mib_s": data / MIB / default_s, "ferry_mib_s": data / MIB / ferry_s,
        "ratio_vs_direct": direct_s / ferry_s, "ratio_vs_default": default_s / ferry_s,
        "ferry_switched_s": switched_s, "copy_ratio_vs_direct": direct_s / switched_s,
        "copy_ratio_vs_default": default_s / switched_s,
        "qemu_img_direct_alloc": med("direct_alloc"),
        "qemu_img_default_alloc": med("default_alloc"), "ferry_alloc": med("ferry_alloc"),
        "ferry_alloc_ratio": med("ferry_alloc") / data,
        "load_before": load_before, "load_after": load_after,
    }

    def line(what: str, seconds: float | None, alloc: float | None = None) -> str:
        return (f"{what:38} {fmt(seconds, '.2f'):>8} "
                f"{fmt(None if seconds is None else data / MIB / seconds, '.0f'):>8} "
                f"{fmt(None if alloc is None else alloc / MIB, '.0f'):>10} "
                f"{fmt(None if alloc is None else alloc / data, '.3f'):>11}")

    def flags(key: str) -> str:
        return "/".join(sorted({str(r[key]) for r in rows}))

    print(f"\nthin qcow2 disk {args.size_gib:g} GiB virtual, {data / GIB:g} GiB of data "
          f"({rows[0]['fill']}, byte {PATTERN}); {HOST}: {SOURCE_POOL} -> {TARGET_POOL}; "
          f"running TCG guest; {len(rows)} round(s), medians")
    print(f"{'copy':38} {'seconds':>8} {'MiB/s':>8} {'alloc MiB':>10} {'alloc/data':>11}")
    print(line("qemu-img convert -t none -T none", direct_s, med("direct_alloc")))
    print(line("qemu-img convert (defaults) + sync", default_s, med("default_alloc")))
    print(line(f"  convert alone (warm-up {'on' if warm_bytes else 'off'})",
               med("default_convert_s")))
    print(line("ferry migrate --format thin", ferry_s, med("ferry_alloc")))
    print(line("  ferry job report total_ms", job_s))
    print(line("  until the VM runs on the new file", switched_s))
    print(line(f"  QEMU mirror ready (seen {len(ready)}/{len(rows)})", ready_s))
    print("ferry job steps, seconds after the API call (last round): " + ", ".join(
        f"{phase} {at:.2f}" for phase, at in rows[-1]["ferry_events"]))
    print(f"source allocation {med('source_alloc_created') / MIB:.0f} MiB as created, "
          f"{med('source_alloc_filled') / MIB:.0f} MiB filled; data clusters (qemu-img map) MiB: "
          f"source {med('source_data_mapped') / MIB:.0f}, qemu-img copies "
          f"{med('direct_data_mapped') / MIB:.0f}/{med('default_data_mapped') / MIB:.0f}, ferry "
          f"{med('ferry_data_mapped') / MIB:.0f}; ferry copy identical to qemu-img's: "
          f"{flags('identical_to_qemu_img_copy')}")
    print(f"QEMU has source/ferry target open O_DIRECT: {flags('source_direct')}/"
          f"{flags('ferry_target_direct')}; mirror mode {flags('ferry_mode')}; sync after "
          f"(not counted): ferry target {med('ferry_sync_after_s'):.2f} s, O_DIRECT copy "
          f"{med('direct_sync_after_s'):.2f} s")
    print(f"throughput ferry / qemu-img: {summary['ratio_vs_direct']:.2f} against -t none -T none, "
          f"{summary['ratio_vs_default']:.2f} against the defaults (target >= 0.9)")
    print(f"copy throughput (API call until the VM runs on its new file) / qemu-img: "
          f"{summary['copy_ratio_vs_direct']:.2f} against -t none -T none, "
          f"{summary['copy_ratio_vs_default']:.2f} against the defaults")
    print(f"ferry target allocation / data: {summary['ferry_alloc_ratio']:.3f} (target <= 1.05)")
    print(f"load average (1/5/15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"summary": summary, "rounds": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
