"""A run killed with SIGKILL while it holds a pool slot must not hold it for ever.

A killed step cannot release its slot; with the shipped dagster.yaml, the daemon marks the
run failed and its run monitoring (``free_slots_after_run_end_seconds``) frees the slot, so
the next run of the pool is not "blocked by limit" for good. This runs a real
``dagster-daemon`` on a copy of deploy/embedded/dagster.yaml.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[2]
POOL = "killed_run_pool"
CODE = f'''
import os
import time
from pathlib import Path

import dagster as dg


@dg.asset(pool="{POOL}")
def holds_a_slot() -> None:
    # The in-process executor runs the step in the run worker: this pid is the run's process.
    Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(600)


defs = dg.Definitions(
    assets=[holds_a_slot],
    jobs=[
        dg.define_asset_job(
            "hold_a_slot",
            selection=[holds_a_slot],
            executor_def=dg.in_process_executor,
            tags={{"dagster/max_retries": "0"}},
        )
    ],
)
'''


def _wait_for(what: str, check, timeout: float, daemon_log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    tail = "\n".join(daemon_log.read_text(errors="replace").splitlines()[-20:])
    pytest.fail(f"{what} did not happen within {timeout:.0f}s; the daemon log ends with:\n{tail}")


def _slots_held_by(instance: dg.DagsterInstance, run_id: str) -> int:
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return sum(1 for slot in info.claimed_slots if slot.run_id == run_id)


@pytest.mark.slow
def test_a_killed_run_is_failed_and_frees_its_pool_slot(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "embedded" / "dagster.yaml", home / "dagster.yaml")
    code = tmp_path / "holds_a_slot.py"
    code.write_text(CODE)
    pid_file = tmp_path / "run.pid"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PID_FILE": str(pid_file)}
    log = tmp_path / "daemon.log"
    bin_dir = Path(sys.executable).parent
    instance = dg.DagsterInstance.from_config(str(home))
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-f", str(code)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        subprocess.run(
            [str(bin_dir / "dagster"), "job", "launch", "-f", str(code), "-j", "hold_a_slot"],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        run = instance.get_runs(limit=1)[0]
        pid = int(
            _wait_for(
                "the run starting", lambda: pid_file.is_file() and pid_file.read_text(), 120, log
            )
        )
        _wait_for(
            "the run claiming its slot", lambda: _slots_held_by(instance, run.run_id), 60, log
        )

        os.kill(pid, signal.SIGKILL)

        _wait_for(
            "the killed run being marked failed",
            lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            60,
            log,
        )
        _wait_for(
            "the killed run's pool slot being freed",
            lambda: _slots_held_by(instance, run.run_id) == 0,
            90,
            log,
        )
    finally:
        instance.dispose()
        try:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
        except ProcessLookupError:
            pass
