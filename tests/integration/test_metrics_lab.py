"""``GET /metrics`` of the lab's server, as Prometheus scrapes it, around a real live move."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from conftest import LabEnv, report_of
from prometheus_client.parser import text_string_to_metric_families

from ferry.cli.client import FerryClient
from ferry.reports import LiveReport

pytestmark = pytest.mark.lab

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
LIVE = {"kind": "migrate", "result": "succeeded"}


def scrape(lab: LabEnv, token: str) -> Samples:
    resp = httpx.get(f"{lab.url}/metrics", headers={"Authorization": f"Bearer {token}"},
                     timeout=30)
    assert resp.status_code == 200, resp.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_live_move_adds_one_to_the_scraped_counter_and_histograms(
        lab: LabEnv, make_vm: Callable[..., None]) -> None:
    make_vm("mx1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat")
    # Prometheus scrapes with a viewer's token, as the admin guide sets it up.
    if "scraper" not in lab.ferry("user", "list").out.split():
        assert lab.ferry("user", "add", "scraper", "--role", "viewer").code == 0
    made = lab.ferry("token", "create", "--user", "scraper", "--label", "prometheus")
    assert made.code == 0, made.err
    token = made.out.strip()
    assert httpx.get(f"{lab.url}/metrics", timeout=30).status_code == 401
    before = scrape(lab, token)

    moved = lab.ferry("migrate", "mx1", "--host", "host2")

    after = scrape(lab, token)
    assert moved.code == 0, moved.err
    assert lab.domains("host2").get("mx1") == "running"  # libvirt's word, not ferry's
    assert "mx1" not in lab.domains("host1")
    client = FerryClient()
    job = client.get_job(client.list_jobs(limit=1)[0].id)
    assert (job.vm, job.state) == ("mx1", "succeeded")
    report = report_of(job, LiveReport)
    assert report.total_ms is not None and report.downtime_ms is not None

    assert value(after, "ferry_migrations_total", **LIVE) \
        == value(before, "ferry_migrations_total", **LIVE) + 1
    duration = "ferry_migration_duration_seconds"
    assert value(after, f"{duration}_count", **LIVE) \
        == value(before, f"{duration}_count", **LIVE) + 1
    assert value(after, f"{duration}_sum", **LIVE) == pytest.approx(
        value(before, f"{duration}_sum", **LIVE) + report.total_ms / 1000)
    downtime = "ferry_migration_downtime_seconds"
    assert value(after, f"{downtime}_count", kind="migrate") \
        == value(before, f"{downtime}_count", kind="migrate") + 1
    assert value(after, "ferry_migration_sent_bytes_total", kind="migrate") \
        == value(before, "ferry_migration_sent_bytes_total", kind="migrate") \
        + (report.data_bytes or 0)
    assert (report.data_bytes or 0) > 0
    # The move let go of its slots; every lab host answers.
    assert [value(after, "ferry_migration_slots_in_use", host=h) for h in lab.hosts] \
        == [0] * len(lab.hosts)
    assert value(after, "ferry_hosts", state="connected") == len(lab.hosts)
    assert value(after, "ferry_migrations_queued", kind="migrate") == 0
