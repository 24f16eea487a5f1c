"""Encrypted migration by default: the pre-flight reads each host's TLS set-up, a pair
that cannot do TLS is refused unless the admin allowed clear text for the host, and
the job's report says which it was. The wire itself is shown in the lab
(tests/integration/test_encrypted_streams.py)."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fake_plane import finished, plane_over, shared_world

from ferry.checks.facts import MoveRequest
from ferry.engine.controlplane import ControlPlane
from ferry.errors import RefusedError
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState
from ferry.reports import ColdReport, LiveReport
from ferry.service import HostSettingsUpdate
from ferry.virt import qemuconf
from ferry.virt.fake import FakeWorld

VM1 = VM(name="web1", uuid="u1", host="", state=VMState.RUNNING, memory_kib=2**20, vcpus=1,
         disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
         interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),))


@pytest.fixture
def world() -> FakeWorld:
    return shared_world(2, VM1)


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


def _without_certificates(world: FakeWorld, host: str) -> None:
    fake = world.host(host)
    fake.tls = replace(fake.tls, files=frozenset())


def test_a_move_asks_for_tls_and_reports_it(plane: ControlPlane, world: FakeWorld) -> None:
    job = finished(plane, plane.start_migration("web1", "host2").id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert [o.tls for o in world.host("host1").migrated_with] == [True]
    assert isinstance(job.report, LiveReport) and job.report.encrypted is True


def test_a_host_without_certificates_is_refused_and_nothing_moves(
        plane: ControlPlane, world: FakeWorld) -> None:
    _without_certificates(world, "host2")
    with pytest.raises(RefusedError) as refused:
        plane.start_migration("web1", "host2")
    [row] = [f for f in refused.value.findings if f.code == "migration.no-tls"]
    assert row.objects["host"] == "host2" and "server-cert.pem" in row.message
    assert "--allow-cleartext-migration on" in row.remedy
    assert plane.list_jobs() == []
    assert world.host("host1").migrated_with == []
    assert "web1" in world.host("host1").vms and "web1" not in world.host("host2").vms


def test_clear_text_allowed_moves_with_the_warning_in_its_report(
        plane: ControlPlane, world: FakeWorld) -> None:
    _without_certificates(world, "host2")
    plane.update_host("host2", HostSettingsUpdate(allow_cleartext_migration=True))
    job = finished(plane, plane.start_migration("web1", "host2").id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert [o.tls for o in world.host("host1").migrated_with] == [False]
    report = job.report
    assert isinstance(report, LiveReport) and report.encrypted is False
    assert "migration.cleartext" in [w.code for w in report.warnings]
    # Turned off again, the same pair is refused again.
    plane.update_host("host2", HostSettingsUpdate(allow_cleartext_migration=False))
    with pytest.raises(RefusedError, match="1 requirement"):
        plane.start_migration("web1", "host1")


def test_a_changed_set_up_counts_once_the_host_is_refreshed(plane: ControlPlane,
                                                             world: FakeWorld) -> None:
    assert plane.check(MoveRequest("web1", dest_host="host2"))  # read and kept a while
    _without_certificates(world, "host2")
    plane.refresh("host2")
    with pytest.raises(RefusedError, match="1 requirement"):
        plane.start_migration("web1", "host2")
    world.host("host2").tls = world.host("host1").tls  # the admin installs them
    plane.refresh("host2")
    job = finished(plane, plane.start_migration("web1", "host2").id)
    assert job.state is JobState.SUCCEEDED, job.error


def test_clear_text_is_not_used_where_tls_works(plane: ControlPlane,
                                                world: FakeWorld) -> None:
    plane.update_host("host2", HostSettingsUpdate(allow_cleartext_migration=True))
    job = finished(plane, plane.start_migration("web1", "host2").id)
    assert [o.tls for o in world.host("host1").migrated_with] == [True]
    assert isinstance(job.report, LiveReport) and job.report.encrypted is True


def test_a_cold_move_reports_the_connections_it_streamed_through(
        plane: ControlPlane, world: FakeWorld) -> None:
    world.host("host1").vms["web1"] = replace(world.host("host1").vms["web1"],
                                              state=VMState.SHUTOFF)
    plane.refresh()
    job = finished(plane, plane.start_migration("web1", "host2", cold=True).id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert isinstance(job.report, ColdReport)
    assert job.report.transport == "streamed through ferry's connections to libvirt (TLS)"


@pytest.mark.parametrize(("conf", "expected"), [
    ("", ("/etc/pki/qemu", False)),
    ('default_tls_x509_cert_dir = "/srv/pki/"\ndefault_tls_x509_verify = 1\n',
     ("/srv/pki", True)),
    ('default_tls_x509_cert_dir = "/srv/pki"\nmigrate_tls_x509_cert_dir = "/srv/mig"\n'
     "migrate_tls_x509_verify = 0 # clients are not asked\ndefault_tls_x509_verify = 1\n",
     ("/srv/mig", False)),
    ('#migrate_tls_x509_cert_dir = "/commented/out"\n', ("/etc/pki/qemu", False)),
])
def test_qemu_conf_names_the_folder_and_the_verification(conf: str,
                                                         expected: tuple[str, bool]) -> None:
    assert qemuconf.migration_tls(conf) == expected
