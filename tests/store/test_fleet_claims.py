"""The claim/lease/reaper path and the metric writes under 8 concurrent worker processes on
PostgreSQL (bench/claims.py at a small scale): every job contested by every process, some
claims abandoned with the lease held and requeued by two concurrent reapers; no job is
claimed twice for one attempt and none is lost."""
from __future__ import annotations

import os

from bench import claims


def test_eight_processes_racing_for_short_jobs_never_double_claim_nor_lose_one(postgres_url):
    admin = os.environ["TRAINYARD_TEST_POSTGRES_URL"]
    report = claims.run(admin, workers=8, n_jobs=60, abandon=0.1, lease_s=1.0, reaper_interval_s=0.3,
                        max_running=4, timeout_s=300)
    assert claims.check(report) == []
    assert report["abandoned"] > 0  # the reaper path really ran: abandoned attempts were resumed
    assert report["claims"] == 60 + report["abandoned"]
    assert sum(1 for s in report["final"].values() if s["attempt"] > 1) > 0
    assert len({r["name"] for r in report["results"] if r["won"]}) > 1  # the claims were spread out
