"""The run launcher tells run monitoring when a run's worker is gone (its code server died
with a killed daemon), so monitoring can fail the run and free its slots."""

import json
import socket

import dagster as dg
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from batch_pipelines.role_onboarding.queue_harness import (
    project_dagster_yaml,
    write_instance_config,
)
from batch_pipelines.run_launcher import MonitoredRunLauncher, worker_status_from_answer


def test_a_run_is_running_only_while_its_code_server_lists_it():
    assert worker_status_from_answer("r1", ["r0", "r1"]) == WorkerStatus.RUNNING
    assert worker_status_from_answer("r1", ["r0"]) == WorkerStatus.NOT_FOUND
    assert worker_status_from_answer("r1", None) == WorkerStatus.NOT_FOUND


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_whose_code_server_no_longer_listens_has_no_worker():
    gone = dg.DagsterRun(
        job_name="role_onboarding_job",
        run_id="dead-run",
        tags={GRPC_INFO_TAG: json.dumps({"host": "127.0.0.1", "port": _free_port()})},
    )
    result = MonitoredRunLauncher().check_run_worker_health(gone)
    assert result.status == WorkerStatus.NOT_FOUND and result.msg == "its code server is gone"


def test_the_projects_instance_monitors_runs_with_this_launcher(tmp_path):
    write_instance_config(project_dagster_yaml(), tmp_path / "home")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        assert instance.run_monitoring_enabled
        assert instance.run_launcher.supports_check_run_worker_health
