"""The web console in a real browser (headless Chromium) against the lab's real `ferry serve`:
what an admin sees and does, checked against libvirt on the hosts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from browser import Console, console
from conftest import LabEnv, disk_source, wait_until
from selenium.webdriver.common.keys import Keys
from served import slow_link

from ferry.cli.client import FerryClient

pytestmark = pytest.mark.lab
__all__ = ["slow_link"]  # the fixture, imported for this module's tests

# Controls without a name a screen reader could say: an input or select with no label
# (for=, aria-label, aria-labelledby, or wrapping), a button or link with no text.
UNLABELLED = """
return [...document.querySelectorAll('input, select, button, a[href], textarea')]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => {
    if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return false;
    if (el.matches('button, a')) return !el.textContent.trim();
    if (el.closest('label')) return false;
    return !(el.id && document.querySelector(`label[for="${el.id}"]`));
  })
  .map((el) => el.outerHTML.slice(0, 120));
"""


def admin_token(lab: LabEnv) -> str:
    return (lab.ferry_home / "token").read_text().strip()


def where_it_runs(lab: LabEnv, vm: str) -> dict[str, str]:
    """Asked of libvirt on every host, not of ferry."""
    return {host: state for host in lab.hosts
            if (state := lab.domains(host).get(vm)) is not None}


def assert_labelled(page: Console) -> None:
    assert page.driver.execute_script(UNLABELLED) == []


@pytest.fixture
def page(lab: LabEnv, tmp_path: Path) -> Iterator[Console]:
    with console(lab.url, tmp_path / "screens") as tab:
        tab.sign_in("admin", admin_token(lab))
        yield tab
        assert tab.console_errors() == []


@pytest.fixture
def backup_network(lab: LabEnv, tmp_path: Path) -> Iterator[str]:
    """A network on host1 and host2 that host3 lacks."""
    xml = tmp_path / "backup.xml"
    xml.write_text("<network><name>Backup</name><forward mode='bridge'/>"
                   "<bridge name='prod0'/></network>")
    for host in ("host1", "host2"):
        lab.virsh(host, "net-define", str(xml))
        lab.virsh(host, "net-start", "Backup")
    assert lab.ferry("refresh").code == 0
    try:
        yield "Backup"
    finally:
        for host in ("host1", "host2"):
            lab.virsh(host, "net-destroy", "Backup", check=False)
            lab.virsh(host, "net-undefine", "Backup", check=False)
        lab.ferry("refresh")


def test_inventory_wizard_and_a_live_move(
        lab: LabEnv, make_vm: Callable[..., None], page: Console, backup_network: str,
        slow_link: Callable[[str | None], None]) -> None:
    make_vm("con1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat", "--network", backup_network)
    try:
        assert lab.collector.wait_for_heartbeat("con1", 60)
        mac = FerryClient().get_vm("con1").interfaces[0].mac

        # The tree: every lab host, the datastores, the network, the VM on host1.
        page.wait_for('#tree a[data-vm="con1"][data-host="host1"]', 30)
        tree = page.find("#tree").text
        for name in ("host1", "host2", "host3", "shared", "local", backup_network):
            assert name in tree
        page.screenshot("inventory")

        page.find('#tree a[data-vm="con1"]').click()
        page.wait_for("#vm-host", text="host1")
        page.find("#migrate").click()
        page.wait_for("#wizard")
        assert page.find("#type-change-host").is_selected()

        # host3 lacks the VM's network: an error row naming the NIC and the network.
        page.choose("#target-host", "host3")
        row = page.wait_for('#errors li[data-code="network.missing"]', 30)
        assert backup_network in row.text and mac in row.text and "host3" in row.text
        assert "Remedy" in row.text
        assert not page.find("#migrate-submit").is_enabled()
        assert_labelled(page)
        page.screenshot("wizard-error")

        page.choose("#target-host", "host2")
        # The memory copy's policy, the VM's default named as the server chose it, and a
        # bandwidth of the move's own.
        page.wait_for('#move-policy option[value="throttle"]', 10)
        assert "auto (ferry's default)" in page.text("#move-policy")
        page.choose("#move-policy", "throttle")
        page.wait_for("#move-policy-help", text="throttl")
        page.find("#move-bandwidth").send_keys("40")
        page.wait_for("#verdict", 30, text="Compatible")
        page.wait(lambda: page.find("#migrate-submit").is_enabled(), 5, "Migrate enabled")

        slow_link("100mbit")  # so the copy lasts long enough to watch
        page.mark_page()
        page.find("#migrate-submit").click()
        # The job page fills in from the server's pushes: figures of the copy, no reload.
        page.wait_for("#job-figures", 60, text="iteration")
        page.wait_for('#tasks-body tr[data-state="running"]', 10)
        # The running job's chart once it has two samples (or the end, if that came first).
        page.wait(lambda: page.all("svg.chart") or not page.all("#job-live"), 30,
                  "the copy's chart or the job's end")
        page.screenshot("running-task")
        heartbeat = page.wait_for("#report-heartbeat", 240)
        assert re.search(r"longest gap, \d+ lost", heartbeat.text), heartbeat.text
        assert page.page_kept(), "the page reloaded"
        assert page.all("svg.chart"), "no chart of the copy"
        page.screenshot("job")

        page.wait_for('#tree a[data-vm="con1"][data-host="host2"]', 30)
        assert where_it_runs(lab, "con1") == {"host2": "running"}
        client = FerryClient()  # a job's events are in the job, not in the list
        said = [e.message for e in client.get_job(client.list_jobs(limit=1)[0].id).events]
        assert "convergence policy throttle (asked for this move)" in said
        assert "migration bandwidth limited to 40 MiB/s (asked for this move)" in said
    finally:
        lab.ferry("vm", "delete", "con1")  # before its network goes


def test_change_datastore_with_a_format_change_by_keyboard(
        lab: LabEnv, make_vm: Callable[..., None], page: Console) -> None:
    make_vm("con2", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "32", "--disk-format", "qcow2", "--workload", "heartbeat")
    page.go("vm/con2/migrate")
    page.wait_for("#wizard")
    # Keyboard only: the arrow moves the choice, typing picks an option, Enter submits.
    page.find("#type-change-host").send_keys(Keys.ARROW_DOWN)
    assert page.find("#type-change-datastore").is_selected()
    page.find("#target-datastore").send_keys("local")
    assert page.find("#target-datastore").get_attribute("value") == "local"
    page.find("#disk-format").send_keys("Thick, e")
    assert page.find("#disk-format").get_attribute("value") == "thick-eager"
    page.wait_for("#verdict", 30, text="Compatible")
    page.wait(lambda: page.find("#migrate-submit").is_enabled(), 5, "Migrate enabled")
    page.find("#migrate-submit").send_keys(Keys.ENTER)

    page.wait_for("#job-report", 240, text="Total")
    page.wait_for("#job-state", 10, text="succeeded")
    xml = lab.virsh("host1", "dumpxml", "con2").stdout
    source = disk_source(xml)
    assert source is not None
    assert lab.virsh("host1", "vol-pool", source).stdout.strip() == "local"
    assert re.search(r"<driver name='qemu' type='raw'", xml), xml
    assert where_it_runs(lab, "con2") == {"host1": "running"}


def test_cancel_a_slow_move_from_the_task_pane(
        lab: LabEnv, make_vm: Callable[..., None], page: Console,
        slow_link: Callable[[str | None], None]) -> None:
    make_vm("con3", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat,mem:64")
    slow_link("20mbit")
    started = lab.ferry("migrate", "con3", "--host", "host2", "--no-wait")
    assert started.code == 0, started.err
    # The pane is redrawn at every push: each look finds the row anew.
    row = page.wait_for('#tasks-body tr[data-state="running"]', 60, text="iteration")
    assert "con3" in row.text
    page.find("#tasks-body tr[data-state='running'] button[aria-label^='Cancel']").click()
    page.wait_for('#tasks-body tr[data-state="cancelled"]', 120, text="con3")
    assert where_it_runs(lab, "con3") == {"host1": "running"}


def test_maintenance_mode_from_the_host_page(
        lab: LabEnv, make_vm: Callable[..., None], page: Console) -> None:
    make_vm("con4", "--host", "host3", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "heartbeat")
    try:
        page.go("host/host3")
        # A limit on the bandwidth of host3's moves, which its evacuation then keeps.
        page.wait_for("#set-bandwidth").send_keys("30")
        page.find("#host-settings button[type='submit']").click()
        wait_until(lambda: {h.name: h for h in FerryClient().list_hosts()}[
            "host3"].migration_bandwidth_mibps == 30, 10, "host3's limit saved")
        page.wait_for("#maintenance-toggle", text="Enter maintenance mode").click()
        report = page.wait_for("#evacuation-report", 240, text="con4")
        assert "Moved" in report.text
        page.wait_for(".badge", 30, text="in maintenance mode")
        assert_labelled(page)
        page.driver.execute_script("arguments[0].scrollIntoView()", report)
        page.screenshot("maintenance")
        runs = where_it_runs(lab, "con4")
        assert "host3" not in runs and list(runs.values()) == ["running"], runs
        page.find("#maintenance-toggle").click()
        page.wait_for("#maintenance-toggle", 30, text="Enter maintenance mode")
        client = FerryClient()
        moved = client.get_job(next(j.id for j in client.list_jobs(limit=10)
                                    if j.vm == "con4" and j.kind == "migrate"))
        assert any("30 MiB/s (host host3's limit)" in e.message for e in moved.events)
    finally:
        lab.ferry("host", "maintenance", "exit", "host3")
        lab.ferry("host", "set", "host3", "--migration-bandwidth", "none")


def test_a_viewer_cannot_migrate_and_the_api_agrees(
        lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path) -> None:
    make_vm("con5", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "heartbeat")
    assert lab.ferry("user", "add", "vera", "--role", "viewer").code == 0
    try:
        created = lab.ferry("token", "create", "--user", "vera", "--label", "console")
        assert created.code == 0, created.err
        token = created.out.strip()
        with console(lab.url, tmp_path / "screens") as tab:
            tab.sign_in("vera", token)
            tab.go("vm/con5")
            button = tab.wait_for("#migrate")
            assert not button.is_enabled()
            assert "viewer" in tab.find("#role-note").text
            # The wizard's URL typed in: the check may be read, the move is the server's call.
            tab.go("vm/con5/migrate")
            tab.wait_for("#wizard")
            tab.choose("#target-host", "host2")
            tab.wait_for("#verdict", 30, text="Compatible")
            tab.find("#migrate-submit").click()
            alert = tab.wait_for("#wizard .error", 20, text="needs role operator")
            assert "user vera has role viewer" in alert.text
            assert tab.console_errors() == []

        refused = httpx.post(f"{lab.url}/api/v1/migrations",
                             headers={"Authorization": f"Bearer {token}"},
                             json={"vm": "con5", "host": "host2"})
        assert refused.status_code == 403
        assert "needs role operator" in refused.json()["error"]["message"]
        assert where_it_runs(lab, "con5") == {"host1": "running"}
        assert [j for j in FerryClient().list_jobs() if j.vm == "con5"] == []
    finally:
        lab.ferry("user", "remove", "vera")


def test_power_off_and_a_cold_move_from_the_console(
        lab: LabEnv, make_vm: Callable[..., None], page: Console) -> None:
    make_vm("con6", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--workload", "heartbeat")
    page.go("vm/con6")
    page.wait_for("#vm-state", 30, text="running")
    page.wait_for("button", text="Power off").click()
    page.wait_for("#vm-state", 60, text="shut")
    assert where_it_runs(lab, "con6") == {"host1": "shut off"}

    page.find("#migrate").click()
    page.wait_for("#wizard")
    # Powered off, only the cold move can be chosen, and it is.
    assert page.find("#type-cold").is_selected()
    assert not page.find("#type-change-host").is_enabled()
    page.choose("#target-host", "host2")
    page.wait_for("#verdict", 30, text="Compatible")
    page.wait(lambda: page.find("#migrate-submit").is_enabled(), 5, "Migrate enabled")
    page.find("#migrate-submit").click()
    page.wait_for("#job-state", 240, text="succeeded")
    assert where_it_runs(lab, "con6") == {"host2": "shut off"}

    # The job history finds it by VM and by kind, and not under another user.
    page.go("jobs")
    page.find("#filter-text").send_keys("con6")
    page.choose("#filter-kind", "cold-migrate")
    page.wait_for("#history tbody tr", 20, text="Cold migrate")
    page.find("#filter-user").send_keys("nobody-else")
    page.wait_for("#history tbody td.empty", 10)


def test_evc_from_the_cluster_page_refused_row_by_row_then_enabled(
        lab: LabEnv, make_vm: Callable[..., None], page: Console) -> None:
    assert lab.ferry("cluster", "create", "conevc").code == 0
    try:
        for host in ("host2", "host3"):
            assert lab.ferry("cluster", "add-host", "conevc", host).code == 0
        make_vm("con7", "--host", "host2", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat")
        page.wait_for('#tree a[href="#/cluster/conevc"]', 30).click()
        page.wait_for("#evc", 30, text="disabled")

        # Below the VM's CPU: refused, one row per requirement, naming the VM and host.
        field = page.find("#evc-mode")
        field.clear()
        field.send_keys("Penryn")
        page.find("#evc-mode").send_keys(Keys.ENTER)
        row = page.wait_for("#evc-refusal tbody tr", 60, text="evc.vm-beyond-mode")
        assert "con7" in row.text and "host2" in row.text
        assert "EVC is off" in lab.ferry("cluster", "evc", "show", "conevc").out

        field = page.find("#evc-mode")
        field.clear()
        field.send_keys("Westmere")
        page.find("#evc-mode").send_keys(Keys.ENTER)
        page.wait_for("#evc", 60, text="Westmere (asked: Westmere)")
        rows = page.wait(lambda: page.all("#evc tbody tr"), 10, "a row per host")
        assert sorted(r.text.split()[0] for r in rows) == ["host2", "host3"]
        assert "Westmere" in lab.ferry("cluster", "evc", "show", "conevc").out
        assert_labelled(page)

        # The cluster's default policy, then a VM's own, which comes first.
        client = FerryClient()
        page.wait_for('#cluster-policy option[value="throttle"]', 10)
        page.choose("#cluster-policy", "throttle")
        wait_until(lambda: {c.name: c for c in client.list_clusters()}[
            "conevc"].migration_policy == "throttle", 10, "the cluster's default saved")
        page.go("vm/con7")
        page.wait_for("#vm-policy-now", 20, text="throttle (cluster conevc's default)")
        assert_labelled(page)
        page.choose("#vm-policy", "postcopy")
        page.wait_for("#vm-policy-now", 10, text="postcopy (VM con7's default)")
        page.screenshot("vm-policy")
        assert client.vm_policy("con7").default == "postcopy"
        page.choose("#vm-policy", "")
        page.wait_for("#vm-policy-now", 10, text="throttle (cluster conevc's default)")
        assert client.vm_policy("con7").default is None
    finally:
        lab.ferry("cluster", "evc", "disable", "conevc")
        for host in ("host2", "host3"):
            lab.ferry("cluster", "remove-host", "conevc", host)
        lab.ferry("cluster", "delete", "conevc")
