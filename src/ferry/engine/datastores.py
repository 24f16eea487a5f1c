"""Which pools on different hosts are the same storage: proved by a probe file.

A pool's name or path says nothing: two hosts can each have a local folder
at the same path. ferry writes a small volume through one host's pool and
looks for it through the other hosts' pools; where it appears, the storage is
shared. The probe is removed afterwards, whatever happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace

from ferry.errors import FerryError
from ferry.model import Pool
from ferry.virt.base import HostConnection


def probe_name() -> str:
    return f"ferry-probe-{uuid.uuid4().hex}.probe"


def seen_through(
    writer: HostConnection, pool: str, readers: Mapping[str, HostConnection],
    candidates: list[Pool],
) -> set[tuple[str, str]]:
    """(host, pool) pairs among ``candidates`` that see a probe written through writer/pool."""
    name = probe_name()
    try:
        writer.create_volume(pool, name, 0, "raw")
    except FerryError:
        return set()
    seen: set[tuple[str, str]] = set()
    try:
        for candidate in candidates:
            reader = readers.get(candidate.host)
            if reader is None:
                continue
            try:
                if reader.find_volume(candidate.name, name) is not None:
                    seen.add((candidate.host, candidate.name))
            except FerryError:
                continue  # a pool we cannot read is not proved shared
    finally:
        try:
            writer.delete_volume(pool, name)
        except FerryError:
            pass  # a stray probe is harmless; inventory refresh will not count it
        for host, pool_name in seen:
            try:
                readers[host].refresh_pool(pool_name)
            except FerryError:
                pass  # best effort: keeps the other host's volume list current
    return seen


def group_pools(pools: list[Pool], conns: Mapping[str, HostConnection]) -> list[Pool]:
    """The pools with ``datastore`` set: one name per group of pools proved identical."""
    groups: list[list[Pool]] = []
    grouped: set[tuple[str, str]] = set()
    active = [p for p in pools if p.active and p.host in conns]
    for pool in active:
        key = (pool.host, pool.name)
        if key in grouped:
            continue
        others = [p for p in active if p.host != pool.host and (p.host, p.name) not in grouped
                  and p.pool_type == pool.pool_type]
        seen = seen_through(conns[pool.host], pool.name, conns, others) if others else set()
        members = [pool] + [p for p in others if (p.host, p.name) in seen]
        grouped.update((p.host, p.name) for p in members)
        groups.append(members)
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
