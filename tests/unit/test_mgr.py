"""The manager's pure parts: rates from scraped counters, health events over time."""

from __future__ import annotations

from mgr.events import HealthWatch
from mgr.scrape import Rates, parse

TEXT = """# TYPE loligo_osd_ops_total counter
loligo_osd_ops_total{op="read",result="ok"} %d
loligo_osd_ops_total{op="write_full",result="ok"} %d
# TYPE loligo_osd_op_latency_seconds histogram
loligo_osd_op_latency_seconds_bucket{op="read",le="+Inf"} %d
loligo_osd_op_latency_seconds_count{op="read"} %d
loligo_osd_op_latency_seconds_sum{op="read"} %f
"""


def sample(at: float, reads: int, writes: int, seconds: float):
    return parse(TEXT % (reads, writes, reads, reads, seconds), at)


def test_rates_and_means_between_scrapes() -> None:
    rates = Rates()
    rates.update(sample(10.0, 100, 50, 1.0))
    assert rates.rate("loligo_osd_ops_total") == 0.0  # one scrape: no rate yet
    rates.update(sample(12.0, 140, 70, 1.4))
    assert rates.rate("loligo_osd_ops_total", op="read") == 20.0
    assert rates.rate("loligo_osd_ops_total") == 30.0
    assert abs(rates.mean("loligo_osd_op_latency_seconds", op="read") - 0.01) < 1e-9
    rates.update(sample(13.0, 5, 0, 0.05))  # the OSD restarted: its counters began again
    assert rates.rate("loligo_osd_ops_total", op="read") == 5.0
    rates.update(None)  # it does not answer
    assert rates.rate("loligo_osd_ops_total") == 0.0
    assert rates.mean("loligo_osd_op_latency_seconds") is None


def check(summary: str) -> dict:
    return {"severity": "HEALTH_WARN", "summary": {"message": summary}}


def test_health_updates_are_told_at_most_every_few_seconds() -> None:
    watch = HealthWatch(update_every=10.0)
    assert watch.update({}, "HEALTH_OK", 0.0) == []  # the first look: nothing to compare
    told = watch.update({"PG_DEGRADED": check("90 degraded")}, "HEALTH_WARN", 1.0)
    assert [e.kind for e in told] == ["failed"]
    assert watch.update({"PG_DEGRADED": check("80 degraded")}, "HEALTH_WARN", 2.0) == []
    later = watch.update({"PG_DEGRADED": check("50 degraded")}, "HEALTH_WARN", 12.0)
    assert [e.message for e in later] == ["Health check update: 50 degraded (PG_DEGRADED)"]
    cleared = watch.update({}, "HEALTH_OK", 12.5)
    assert [e.kind for e in cleared] == ["cleared", ""]
    assert cleared[1].message == "Cluster is now healthy"
