"""Host and link checks: migration settings, reachability, link, memory, vCPUs, slots."""

from dataclasses import replace

from preflight_fixtures import (
    codes,
    facts,
    host,
    inventory,
    link,
    settings,
    storage_move,
    tls_ready,
)

from ferry.checks import host as checks
from ferry.checks.facts import HostSettings, Reachability
from ferry.checks.finding import Status


def test_all_met_passes() -> None:
    f = facts()
    for check in (checks.migration_enabled, checks.reachability, checks.link_speed,
                  checks.link_mtu, checks.traffic_protected, checks.not_in_maintenance,
                  checks.memory_fits, checks.vcpus_fit, checks.migration_slots):
        rows = check(f)
        assert rows and all(r.status is Status.PASS for r in rows), (check.__name__, rows)


def test_migration_disabled_and_no_address_on_each_host() -> None:
    f = facts(settings={"host1": settings("host1", migration_enabled=False),
                        "host2": settings("host2", migration_address=None)})
    rows = checks.migration_enabled(f)
    assert codes(rows) == ["host.migration-disabled", "host.no-migration-address"]
    assert rows[0].objects == {"host": "host1"} and rows[1].objects == {"host": "host2"}


def test_settings_fall_back_to_the_inventory_host_record() -> None:
    inv = inventory(hosts={"host1": host("host1"),
                           "host2": replace(host("host2"), migration_enabled=False)})
    rows = checks.migration_enabled(facts(inventory=inv, settings={}))
    assert codes(rows) == ["host.migration-disabled"]


def test_reachability_unknown_is_a_warning_and_unreachable_names_both_hosts() -> None:
    assert codes(checks.reachability(facts(reachability=None)), Status.WARNING) == [
        "host.reachability-unverified"]
    [row] = checks.reachability(facts(reachability=Reachability(False, "connection refused")))
    assert row.code == "host.unreachable" and row.status is Status.ERROR
    assert row.objects == {"source_host": "host1", "dest_host": "host2", "address": "198.18.0.2"}
    assert "host1" in row.message and "host2" in row.message and "198.18.0.2" in row.message
    assert "connection refused" in row.message


def test_link_speed_levels() -> None:
    slow = facts(links={"host1": link(speed_mbps=100), "host2": link(up=False)})
    rows = checks.link_speed(slow)
    assert [(r.code, r.status) for r in rows] == [("link.slow", Status.WARNING),
                                                  ("link.down", Status.ERROR)]
    assert "100 Mbit/s" in rows[0].message and rows[1].objects["host"] == "host2"
    unknown = facts(settings={"host1": settings("host1", migration_interface=None),
                              "host2": settings("host2")}, links={"host1": link()})
    rows = checks.link_speed(unknown)
    assert codes(rows, Status.WARNING) == ["link.no-interface", "link.unverified"]
    assert "migration interface" in rows[0].remedy
    assert codes(checks.link_speed(facts(links={"host1": link(speed_mbps=None),
                                                "host2": link()})),
                 Status.WARNING) == ["link.speed-unknown"]


def test_mtu_below_jumbo_is_a_warning() -> None:
    rows = checks.link_mtu(facts(links={"host1": link(mtu=1500), "host2": link()}))
    assert codes(rows, Status.WARNING) == ["link.mtu-small"]
    assert "1500" in rows[0].message and rows[0].objects == {"host": "host1", "interface": "eth1"}
    rows = checks.link_mtu(facts(links={}))
    assert {r.status for r in rows} == {Status.NOT_APPLICABLE}


def test_a_pair_with_certificates_migrates_encrypted() -> None:
    [row] = checks.traffic_protected(facts())
    assert (row.code, row.status) == ("migration.protected", Status.PASS)
    assert "encrypted" in row.message


def test_a_destination_without_server_certificates_is_refused_naming_it() -> None:
    lacking = facts(migration_tls={"host1": tls_ready(),
                                   "host2": tls_ready("server-cert.pem", "server-key.pem")})
    [row] = checks.traffic_protected(lacking)
    assert (row.code, row.status) == ("migration.no-tls", Status.ERROR)
    assert row.objects["host"] == "host2"
    assert "host2 cannot receive" in row.message and "server-key.pem" in row.message
    assert "/etc/pki/qemu" in row.message and "migrate_tls_x509_cert_dir" in row.remedy
    assert "ferry host set host2 --allow-cleartext-migration on" in row.remedy


def test_a_source_needs_a_client_certificate_only_where_the_destination_asks() -> None:
    no_client = tls_ready("client-cert.pem", "client-key.pem")
    [row] = checks.traffic_protected(facts(migration_tls={"host1": no_client,
                                                          "host2": tls_ready()}))
    assert (row.code, row.objects["host"]) == ("migration.no-tls", "host1")
    assert "host1 cannot send" in row.message
    relaxed = tls_ready(verify_clients=False)
    [row] = checks.traffic_protected(facts(migration_tls={"host1": no_client,
                                                          "host2": relaxed}))
    assert row.code == "migration.protected"


def test_cleartext_allowed_for_the_lacking_host_is_a_warning() -> None:
    lacking = {"host1": tls_ready(), "host2": tls_ready("ca-cert.pem")}
    allowed = facts(migration_tls=lacking, settings={
        "host1": settings("host1"),
        "host2": settings("host2", allow_cleartext_migration=True,
                          migration_network_isolated=False)})
    [row] = checks.traffic_protected(allowed)
    assert (row.code, row.status) == ("migration.cleartext", Status.WARNING)
    assert "clear text" in row.message and "not declared isolated" in row.message
    assert not checks.stream_encrypted([row])
    # Allowing it on the other host of the pair does not count.
    other = facts(migration_tls=lacking, settings={
        "host1": settings("host1", allow_cleartext_migration=True),
        "host2": settings("host2")})
    assert checks.traffic_protected(other)[0].code == "migration.no-tls"


def test_isolation_is_said_but_clear_text_stays_a_warning() -> None:
    isolated = facts(migration_tls={"host1": tls_ready("ca-cert.pem"), "host2": tls_ready()},
                     settings={"host1": settings("host1", allow_cleartext_migration=True,
                                                 migration_network_isolated=True),
                               "host2": settings("host2", migration_network_isolated=True)})
    [row] = checks.traffic_protected(isolated)
    assert (row.code, row.status) == ("migration.cleartext", Status.WARNING)
    assert "declared isolated" in row.message and "sniffed" not in row.message


def test_a_host_whose_set_up_cannot_be_read_is_not_verified() -> None:
    [row] = checks.traffic_protected(facts(migration_tls={"host1": tls_ready()}))
    assert (row.code, row.status) == ("migration.tls-unverified", Status.WARNING)
    assert "host2" in row.message and checks.stream_encrypted([row])


def test_destination_in_maintenance() -> None:
    [row] = checks.not_in_maintenance(
        facts(settings={"host1": settings("host1"), "host2": settings("host2", maintenance=True)}))
    assert (row.code, row.status, row.objects) == ("host.maintenance", Status.ERROR,
                                                   {"host": "host2"})


def test_memory_with_figures_and_limit() -> None:
    [row] = checks.memory_fits(facts(memory_committed_mib={"host2": 15000}))
    assert row.code == "host.memory-insufficient"
    assert "2048 MiB" in row.message and "15000 MiB" in row.message and "16384" in row.message
    limited = facts(settings={"host1": settings("host1"),
                              "host2": settings("host2", memory_limit_mib=5000)})
    [row] = checks.memory_fits(limited)
    assert row.code == "host.memory-insufficient" and "memory limit" in row.message
    [row] = checks.memory_fits(facts(memory_committed_mib={}))
    assert (row.code, row.status) == ("host.memory-unverified", Status.WARNING)


def test_vcpus_of_the_single_vm_against_host_cpus() -> None:
    inv = inventory(hosts={"host1": host("host1"), "host2": host("host2", cpus=1)})
    [row] = checks.vcpus_fit(facts(inventory=inv))
    assert row.code == "host.vcpus-insufficient" and row.objects == {"vm": "web1", "host": "host2"}
    # Many vCPUs already committed is overcommit, which is normal.
    [row] = checks.vcpus_fit(facts(vcpus_committed={"host2": 500}))
    assert row.status is Status.PASS


def test_full_hosts_queue_rather_than_fail() -> None:
    rows = checks.migration_slots(facts(migrations_running={"host1": 2, "host2": 1}))
    assert [(r.code, r.status) for r in rows] == [("host.migrations-queued", Status.WARNING),
                                                  ("host.migration-slots", Status.PASS)]
    # A storage move occupies only the VM's own host.
    rows = checks.migration_slots(facts(request=storage_move(), migrations_running={"host2": 9}))
    assert [r.objects["host"] for r in rows] == ["host1"]


def test_declared_settings_win_over_the_record() -> None:
    f = facts(settings={"host2": HostSettings(migration_address="10.0.0.2")})
    assert checks.settings_for(f, "host2").migration_address == "10.0.0.2"
    assert checks.settings_for(f, "host1").migration_address == "198.18.0.1"


def test_maintenance_not_judged_when_the_vm_keeps_its_host() -> None:
    cold_datastore_only = facts(request=storage_move(cold=True),
                                settings={"host1": settings("host1", maintenance=True)})
    [row] = checks.not_in_maintenance(cold_datastore_only)
    assert row.status is Status.NOT_APPLICABLE
