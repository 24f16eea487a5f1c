"""Placement for an evacuation: allowed hosts only, the most free memory under the limit."""

from __future__ import annotations

from dataclasses import replace

from preflight_fixtures import host, vm

from ferry.engine.placement import (
    Candidate,
    choose_host,
    evacuation_scope,
    free_memory_mib,
    running_mib,
    why_not,
)
from ferry.model import VMState


def test_the_allowed_host_with_most_free_memory_wins_and_ties_go_by_name() -> None:
    web = vm()  # 2 GiB
    chosen = choose_host(web, [Candidate("h3", (), 8000), Candidate("h2", (), 9000),
                               Candidate("h4", ("cpu.incompatible: lacks aes",), 60000)])
    assert chosen is not None and chosen.host == "h2"
    tie = choose_host(web, [Candidate("h3", (), 9000), Candidate("h2", (), 9000)])
    assert tie is not None and tie.host == "h2"


def test_nowhere_to_go_says_why_for_each_host() -> None:
    web = vm()
    candidates = [Candidate("h2", ("storage.not-shared: disk vda is on local@host1",), 9000),
                  Candidate("h3", (), 1024)]
    assert choose_host(web, candidates) is None
    reason = why_not(web, candidates)
    assert "h2: storage.not-shared" in reason and "h3: 1024 MiB free" in reason


def test_free_memory_counts_running_vms_the_limit_and_what_is_planned() -> None:
    h2 = replace(host("host2", memory_mib=16384), memory_limit_mib=8192)
    vms = [vm(name="a", host="host2"), vm(name="b", host="host2", state=VMState.SHUTOFF),
           vm(name="c", host="host3")]
    running = running_mib(vms)
    assert free_memory_mib(h2, running) == 8192 - 2048
    assert free_memory_mib(h2, running, planned_mib=1024) == 8192 - 2048 - 1024
    assert free_memory_mib(host("host2", memory_mib=16384), running) == 16384 - 2048


def test_a_host_in_a_cluster_is_evacuated_within_it_and_a_lone_one_anywhere() -> None:
    hosts = [replace(host("host1"), cluster="prod"), replace(host("host2"), cluster="prod"),
             replace(host("host3"), cluster="prod", maintenance=True),
             replace(host("host4"), cluster="test"), host("host5")]
    scope = evacuation_scope(hosts[0], hosts)
    assert [h.name for h in scope.hosts] == ["host2"]
    assert scope.description == "the other hosts of cluster prod"
    lone = evacuation_scope(hosts[4], hosts)
    assert [h.name for h in lone.hosts] == ["host1", "host2", "host4"]
    alone = evacuation_scope(hosts[3], hosts)
    assert alone.hosts == []
    assert why_not(vm(), [], alone.description) == (
        "nowhere to go: the other hosts of cluster test (none is out of maintenance mode)")
