"""Which pools on different hosts are the same storage: proved by a probe file.

A pool's name or path says nothing: two hosts can each have a local folder
at the same path. ferry writes a small volume (a marker) through one host's
pool and looks for it through the other hosts' pools; where it appears, the
storage is shared. The markers are removed afterwards, whatever happens.

The number of probes grows with the datastores, not with their pairs: each
datastore group gets one marker, written through its first pool, and every
other pool is listed once and joins the group whose marker it holds; a pool
that holds none starts a group of its own. A pool is listed only after every
earlier group's marker was written, so two pools that are the same storage
always end in one group. Refreshing one host writes one marker into each
group known from the other hosts and lists that host's pools only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ferry.errors import FerryError
from ferry.model import Pool
from ferry.virt.base import HostConnection


def probe_name() -> str:
    return f"ferry-probe-{uuid.uuid4().hex}.probe"


@dataclass
class _Group:
    """Pools proved to be one storage, and the marker a further pool proves it by."""

    members: list[Pool]
    marker: str | None = None  # None: no marker could be written; nothing can join
    writer: Pool | None = None  # the pool the marker was written through
    readers: list[Pool] = field(default_factory=list)  # pools that listed it (and joined)
    hosts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.hosts.update(p.host for p in self.members)

    def add(self, pool: Pool) -> None:
        self.members.append(pool)
        self.readers.append(pool)
        self.hosts.add(pool.host)

    def may_hold(self, pool: Pool) -> bool:
        """Whether ``pool`` could join: same kind of pool, a host not in the group yet."""
        return (self.marker is not None and self.members[0].pool_type == pool.pool_type
                and pool.host not in self.hosts)


def _write_marker(group: _Group, writer: Pool, conns: Mapping[str, HostConnection]) -> None:
    name = probe_name()
    try:
        conns[writer.host].create_volume(writer.name, name, 0, "raw")
    except FerryError:
        return  # a pool we cannot write through proves nothing; it stays alone
    group.marker, group.writer = name, writer


class _Markers:
    """The groups by their markers, so a pool's listing is matched without a scan of
    every group (a fleet of local pools has as many groups as hosts)."""

    def __init__(self, groups: list[_Group]) -> None:
        self.groups = groups
        self._by_marker: dict[str, _Group] = {}
        self._kinds: dict[str, int] = {}  # pool type -> groups of it with a marker

    def add(self, group: _Group) -> None:
        self.groups.append(group)
        self.marked(group)

    def marked(self, group: _Group) -> None:
        if group.marker is not None:
            self._by_marker[group.marker] = group
            kind = group.members[0].pool_type
            self._kinds[kind] = self._kinds.get(kind, 0) + 1

    def join(self, pool: Pool, conns: Mapping[str, HostConnection]) -> bool:
        """Lists ``pool`` once; adds it to the first group whose marker it holds."""
        if not self._kinds.get(pool.pool_type):
            return False  # no group it could join: nothing to list
        try:
            names = conns[pool.host].list_volumes(pool.name)
        except FerryError:
            return False  # a pool we cannot read is not proved shared
        seen = [self._by_marker[n] for n in names if n in self._by_marker]
        for group in sorted(seen, key=self.groups.index) if len(seen) > 1 else seen:
            if group.may_hold(pool):
                group.add(pool)
                return True
        return False


def _remove_markers(groups: list[_Group], conns: Mapping[str, HostConnection]) -> None:
    for group in groups:
        if group.marker is None or group.writer is None:
            continue
        try:
            conns[group.writer.host].delete_volume(group.writer.name, group.marker)
        except FerryError:
            pass  # a stray probe is harmless; inventory refresh will not count it
        for reader in group.readers:
            try:
                conns[reader.host].refresh_pool(reader.name)
            except FerryError:
                pass  # best effort: keeps the other host's volume list current
        group.marker = None


def group_pools(pools: list[Pool], conns: Mapping[str, HostConnection]) -> list[Pool]:
    """The pools with ``datastore`` set: one name per group of pools proved identical.

    Each pool is listed at most once and each group written to once: the probes
    grow with the pools, not with their pairs.
    """
    groups: list[_Group] = []
    markers = _Markers(groups)
    try:
        for pool in pools:
            if not pool.active or pool.host not in conns:
                continue
            if not markers.join(pool, conns):
                group = _Group([pool])
                _write_marker(group, pool, conns)
                markers.add(group)
    finally:
        _remove_markers(groups, conns)
    return _named(pools, [g.members for g in groups])


def regroup_host(host: str, pools: list[Pool], known: list[Pool],
                 conns: Mapping[str, HostConnection]) -> list[Pool]:
    """``known`` (other hosts' pools, grouped before) and ``host``'s ``pools``, grouped.

    One marker goes into each known group that one of ``host``'s pools could
    join, written through a member on a host that answers; then each of
    ``host``'s pools is listed once. The other hosts' groups stay as they were
    proved: only this host's pools are placed among them.
    """
    by_label: dict[str, list[Pool]] = {}
    for pool in known:
        if pool.host != host and pool.datastore is not None:
            by_label.setdefault(pool.datastore, []).append(pool)
    fresh = [p for p in pools if p.active and p.host == host and host in conns]
    kinds = {p.pool_type for p in fresh}
    groups = [_Group(list(members)) for members in by_label.values()]
    markers = _Markers(list(groups))
    try:
        for group in groups:
            if group.members[0].pool_type not in kinds:
                continue
            writer = next((p for p in group.members if p.active and p.host in conns), None)
            if writer is not None:
                _write_marker(group, writer, conns)
                markers.marked(group)
        own: list[_Group] = []
        for pool in fresh:
            if not markers.join(pool, conns):
                own.append(_Group([pool]))
    finally:
        _remove_markers(groups, conns)
    grouped = [p for p in known if p.host != host] + [p for p in pools if p.host == host]
    return _named(grouped, [g.members for g in groups + own])


def _named(pools: list[Pool], groups: list[list[Pool]]) -> list[Pool]:
    """Each group named after its first pool; a name two groups share gets the host."""
    name_uses: dict[str, int] = {}
    for members in groups:
        name_uses[members[0].name] = name_uses.get(members[0].name, 0) + 1
    named: dict[tuple[str, str], str] = {}
    for members in groups:
        first = members[0]
        label = first.name if name_uses[first.name] == 1 else f"{first.name}@{first.host}"
        for member in members:
            named[(member.host, member.name)] = label
    return [replace(p, datastore=named.get((p.host, p.name))) for p in pools]
