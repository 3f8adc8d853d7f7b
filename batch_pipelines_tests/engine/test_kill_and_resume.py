"""Kill test: SIGKILL the process running a 1,000-job batch while it submits and while it
tracks; resumed runs complete the batch with no job lost and none submitted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.store.batch_store import BatchStore

ROOT = Path(__file__).resolve().parents[2]
JOBS = 1000


def _start(store_url: str, sim_db: Path, batch_id: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batch_pipelines_tests.engine.kill_worker",
            store_url,
            str(sim_db),
            str(batch_id),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_when(
    proc: subprocess.Popen, store: BatchStore, batch_id: int, condition, timeout: float = 120
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = store.job_status_counts(batch_id)
        if condition(counts):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return counts
        if proc.poll() is not None:
            pytest.fail(f"worker ended before the kill point: {proc.stdout.read()}")
        time.sleep(0.01)
    proc.kill()
    out, _ = proc.communicate()
    pytest.fail(
        f"kill point not reached; counts {store.job_status_counts(batch_id)}; worker output:\n{out[-3000:]}"
    )


def _submitted(counts: dict) -> int:
    return sum(n for s, n in counts.items() if s not in ("INITIATED", "ERROR"))


@pytest.mark.slow
def test_a_batch_killed_while_submitting_and_while_tracking_resumes_with_nothing_lost_or_doubled(
    database_url, tmp_path
):
    store = BatchStore(database_url)
    sim_db = tmp_path / "rm.db"
    batch_id = store.create_batch(
        family="risk_modeling",
        batch_type="EDM Creation",
        job_configurations=[
            {"key": f"RM_EDM_{i:06d}", "data": {"edm_name": f"RM_EDM_{i:06d}"}} for i in range(JOBS)
        ],
    )
    kill_points = [
        ("early submission", lambda c: _submitted(c) >= 50),
        ("mid submission", lambda c: _submitted(c) >= 400),
        ("late submission", lambda c: _submitted(c) >= 800),
        ("tracking", lambda c: c.get("INITIATED", 0) == 0 and c.get("FINISHED", 0) < JOBS - 100),
    ]
    seen = []
    for name, condition in kill_points:
        seen.append(
            (name, _kill_when(_start(database_url, sim_db, batch_id), store, batch_id, condition))
        )

    final = _start(database_url, sim_db, batch_id)
    out, _ = final.communicate(timeout=120)
    assert final.returncode == 0, out

    assert store.get_batch(batch_id).status == BatchStatus.COMPLETED, out
    assert store.job_status_counts(batch_id) == {"FINISHED": JOBS}
    jobs = store.list_jobs(batch_id)
    assert len({j.workflow_id for j in jobs}) == JOBS
    # the simulator's own ledger: every job accepted exactly once, however often resent
    stats = RiskModelerSimulator(sim_db).stats()
    assert stats["accepted_total"] == JOBS, (stats, seen)
    assert stats["duplicate_acceptances"] == []
    assert sum(stats["workflows_by_status"].values()) == JOBS
    # at least one job was claimed again after a kill (the kills really interrupted work)
    assert max(j.submit_attempts for j in jobs) >= 2
    store.dispose()
