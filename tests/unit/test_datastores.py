from ferry.engine.datastores import group_pools
from ferry.virt.fake import Backing, FakeHost, FakeWorld


def test_probe_groups_shared_pools_and_separates_same_path_locals() -> None:
    world = FakeWorld()
    shared = Backing()
    hosts = [FakeHost(world, f"host{i}", f"uuid-{i}") for i in (1, 2, 3)]
    for host in hosts:
        host.add_pool("shared", "/srv/shared", shared)
        host.add_pool("local", "/var/lib/local", Backing())  # same path, own storage
    pools = [p for h in hosts for p in h.list_pools()]
    grouped = {(p.host, p.name): p.datastore for p in group_pools(pools, world.hosts)}
    assert {grouped[(h, "shared")] for h in ("host1", "host2", "host3")} == {"shared"}
    assert [grouped[(h, "local")] for h in ("host1", "host2", "host3")] == [
        "local@host1", "local@host2", "local@host3"]
    # Probes are removed afterwards.
    assert shared.files == set()


def test_pool_with_another_name_is_still_recognised() -> None:
    world = FakeWorld()
    nfs = Backing()
    a, b = FakeHost(world, "a", "1"), FakeHost(world, "b", "2")
    a.add_pool("images", "/srv/images", nfs)
    b.add_pool("nfs-images", "/mnt/images", nfs)
    grouped = group_pools(a.list_pools() + b.list_pools(), world.hosts)
    assert {p.datastore for p in grouped} == {"images"}
